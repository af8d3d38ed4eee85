//! The AWS KMS keyring: data keys generated and unwrapped by one KMS key.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;

use super::keyring::provider_ids;
use super::{CryptoError, DataKey, EncryptedDataKey, EncryptionContext, Keyring};

const PROVIDER_ID: &str = "aws-kms";

/// ESDK AWS KMS keyring (strict, single key). `key_id` may be a key ARN, key id, alias name or
/// alias ARN. EDKs record the key ARN KMS reports, as the official SDKs do.
///
/// On decrypt, a key ARN configuration only tries EDKs recorded under exactly that ARN (the
/// spec's rule). For an alias or bare key id the recorded ARN cannot be compared locally, so every
/// KMS EDK is offered to KMS with `KeyId` set to the configured identifier: KMS itself refuses a
/// ciphertext made under a different key, and the ARN KMS answers with must equal the recorded one.
#[derive(Clone)]
pub struct KmsKeyring {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsKeyring {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn context_map(ctx: &EncryptionContext) -> Option<HashMap<String, String>> {
        if ctx.is_empty() {
            None
        } else {
            Some(
                ctx.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        }
    }
}

impl fmt::Debug for KmsKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKeyring")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Only the service's error code and message (or the SDK's description of a transport failure):
/// request bodies, which hold ciphertext blobs, never end up in an error.
fn kms_error<E, R>(op: &str, err: SdkError<E, R>) -> CryptoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let Some(se) = err.as_service_error() else {
        // No answer from KMS (timeout, connection, dispatch): try again later.
        return CryptoError::KmsUnavailable(format!("{op}: {}", DisplayErrorContext(&err)));
    };
    let code = se.code().unwrap_or("UnknownError");
    let text = format!("{op}: {code}: {}", se.message().unwrap_or(""));
    // Classified by the service's error code, never by message text.
    match code {
        "ThrottlingException"
        | "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "LimitExceededException" => CryptoError::KmsUnavailable(text),
        "AccessDeniedException"
        | "NotFoundException"
        | "DisabledException"
        | "KMSInvalidStateException"
        | "InvalidKeyUsageException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException" => CryptoError::KmsConfiguration(text),
        // A service answer without a code we can read (moto's IAM denials arrive so) is a
        // deployment problem rather than one recording's.
        "UnknownError" => CryptoError::KmsConfiguration(text),
        _ => CryptoError::Kms(text),
    }
}

fn is_key_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "kms"
        && parts[5].starts_with("key/")
        && parts[5].len() > "key/".len()
}

#[async_trait]
impl Keyring for KmsKeyring {
    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), CryptoError> {
        let resp = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .number_of_bytes(32)
            .set_encryption_context(Self::context_map(ctx))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", e))?;
        let plaintext = resp
            .plaintext()
            .ok_or_else(|| CryptoError::Kms("GenerateDataKey: response has no Plaintext".into()))?;
        let data_key = DataKey::try_from_slice(plaintext.as_ref())
            .map_err(|_| CryptoError::Kms("GenerateDataKey: Plaintext is not 32 bytes".into()))?;
        let arn = resp.key_id().filter(|k| is_key_arn(k)).ok_or_else(|| {
            CryptoError::Kms("GenerateDataKey: response KeyId is not a key ARN".into())
        })?;
        let blob = resp.ciphertext_blob().ok_or_else(|| {
            CryptoError::Kms("GenerateDataKey: response has no CiphertextBlob".into())
        })?;
        let edk = EncryptedDataKey {
            provider_id: PROVIDER_ID.to_owned(),
            provider_info: arn.as_bytes().to_vec(),
            ciphertext: blob.as_ref().to_vec(),
        };
        Ok((data_key, vec![edk]))
    }

    async fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, CryptoError> {
        let configured_is_arn = is_key_arn(&self.key_id);
        let mut errors = Vec::new();
        for edk in edks.iter().filter(|e| e.provider_id == PROVIDER_ID) {
            let Some(arn) = std::str::from_utf8(&edk.provider_info)
                .ok()
                .filter(|a| is_key_arn(a))
            else {
                errors.push("EDK provider info is not a KMS key ARN".to_owned());
                continue;
            };
            if configured_is_arn && arn != self.key_id {
                continue;
            }
            let resp = self
                .client
                .decrypt()
                .key_id(&self.key_id)
                .ciphertext_blob(Blob::new(edk.ciphertext.clone()))
                .set_encryption_context(Self::context_map(ctx))
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    errors.push(kms_error("Decrypt", e).to_string());
                    continue;
                }
            };
            if resp.key_id() != Some(arn) {
                errors.push(format!(
                    "Decrypt: KMS answered for key {:?}, EDK names {arn}",
                    resp.key_id()
                ));
                continue;
            }
            match resp
                .plaintext()
                .map(|p| DataKey::try_from_slice(p.as_ref()))
            {
                Some(Ok(key)) => return Ok(key),
                _ => errors.push("Decrypt: Plaintext missing or not 32 bytes".to_owned()),
            }
        }
        if errors.is_empty() {
            Err(CryptoError::NoDecryptableKey {
                providers: provider_ids(edks),
            })
        } else {
            Err(CryptoError::Kms(errors.join("; ")))
        }
    }
}
