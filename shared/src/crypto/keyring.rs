//! Keyrings: where data keys come from and how they are wrapped. Also the raw AES keyring.

use std::fmt;

use async_trait::async_trait;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use super::{CryptoError, EncryptionContext};

/// A 256-bit plaintext data key, wiped from memory on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies a slice that must be exactly 32 bytes (e.g. a KMS response).
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(CryptoError::Malformed(format!(
                "data key is {} bytes, expected 32",
                bytes.len()
            )));
        }
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// A fresh key from the system CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| CryptoError::Primitive("random"))?;
        Ok(Self(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(***)")
    }
}

/// A data key wrapped by some key provider, as stored in the message header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedDataKey {
    pub provider_id: String,
    pub provider_info: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Source of data keys for encryption and unwrapper of them for decryption.
#[async_trait]
pub trait Keyring: Send + Sync {
    /// A new plaintext data key and at least one encrypted copy of it, bound to `ctx`.
    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), CryptoError>;

    /// The plaintext of the first of `edks` this keyring can decrypt under `ctx`.
    async fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, CryptoError>;
}

pub(crate) fn provider_ids(edks: &[EncryptedDataKey]) -> Vec<String> {
    edks.iter().map(|e| e.provider_id.clone()).collect()
}

const WRAP_IV_LEN: usize = 12;
const WRAP_TAG_LEN: usize = 16;
const WRAP_TAG_BITS: u32 = 128;

/// The ESDK raw AES keyring with an AES-256-GCM wrapping key (IV 12 bytes, tag 16 bytes). EDKs it
/// writes are readable by the official SDKs' raw AES keyring / `RawMasterKey` configured with the
/// same namespace (provider id), name and key.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: LessSafeKey,
}

impl RawAesKeyring {
    /// Fails with [`CryptoError::KeyringConfig`] for a namespace starting with `aws-kms` (every
    /// ESDK routes provider id "aws-kms" to KMS, so such EDKs would be misread) or a namespace or
    /// name too long for the header's u16 length fields.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        key: [u8; 32],
    ) -> Result<Self, CryptoError> {
        let key = Zeroizing::new(key);
        let namespace = namespace.into();
        let name = name.into();
        if namespace.starts_with("aws-kms") {
            return Err(CryptoError::KeyringConfig(
                "raw AES key namespace must not start with \"aws-kms\"".into(),
            ));
        }
        if namespace.len() > usize::from(u16::MAX)
            || name.len() + 8 + WRAP_IV_LEN > usize::from(u16::MAX)
        {
            return Err(CryptoError::KeyringConfig(
                "namespace or key name too long".into(),
            ));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
            .map_err(|_| CryptoError::Primitive("AES-256-GCM key"))?;
        Ok(Self {
            namespace,
            name,
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn wrap(
        &self,
        data_key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<EncryptedDataKey, CryptoError> {
        let aad = ctx.serialize()?;
        let mut iv = [0u8; WRAP_IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| CryptoError::Primitive("random"))?;
        let mut ciphertext = Vec::with_capacity(32 + WRAP_TAG_LEN);
        ciphertext.extend_from_slice(data_key.as_bytes());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad),
                &mut ciphertext,
            )
            .map_err(|_| CryptoError::Primitive("AES-GCM seal"))?;
        ciphertext.extend_from_slice(tag.as_ref());
        let mut provider_info = Vec::with_capacity(self.name.len() + 8 + WRAP_IV_LEN);
        provider_info.extend_from_slice(self.name.as_bytes());
        provider_info.extend_from_slice(&WRAP_TAG_BITS.to_be_bytes());
        provider_info.extend_from_slice(&(WRAP_IV_LEN as u32).to_be_bytes());
        provider_info.extend_from_slice(&iv);
        Ok(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info,
            ciphertext,
        })
    }

    /// `None` when the EDK is not ours (wrong namespace/name/parameters) or does not authenticate.
    fn try_unwrap(&self, edk: &EncryptedDataKey, aad: &[u8]) -> Option<DataKey> {
        if edk.provider_id != self.namespace {
            return None;
        }
        let info = edk.provider_info.strip_prefix(self.name.as_bytes())?;
        if info.len() != 8 + WRAP_IV_LEN
            || info[0..4] != WRAP_TAG_BITS.to_be_bytes()
            || info[4..8] != (WRAP_IV_LEN as u32).to_be_bytes()
        {
            return None;
        }
        let iv = Nonce::try_assume_unique_for_key(&info[8..]).ok()?;
        if edk.ciphertext.len() != 32 + WRAP_TAG_LEN {
            return None;
        }
        let (ct, tag) = edk.ciphertext.split_at(32);
        let mut plain = Zeroizing::new([0u8; 32]);
        self.key
            .open_separate_gather(iv, Aad::from(aad), ct, tag, plain.as_mut())
            .ok()?;
        Some(DataKey(plain))
    }
}

impl fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Keyring for RawAesKeyring {
    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), CryptoError> {
        let data_key = DataKey::generate()?;
        let edk = self.wrap(&data_key, ctx)?;
        Ok((data_key, vec![edk]))
    }

    async fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, CryptoError> {
        let aad = ctx.serialize()?;
        edks.iter()
            .find_map(|edk| self.try_unwrap(edk, &aad))
            .ok_or_else(|| CryptoError::NoDecryptableKey {
                providers: provider_ids(edks),
            })
    }
}
