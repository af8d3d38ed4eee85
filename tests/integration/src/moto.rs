//! A moto server (S3, SQS, KMS, Secrets Manager, EventBridge) on a free loopback port, with or
//! without IAM enforcement ([`MotoServer::start_iam_enforced`]).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::iam::AccessKey;

/// A running `moto_server`, killed when dropped.
pub struct MotoServer {
    child: Child,
    port: u16,
    /// The credentials of [`MotoServer::sdk_config`]: the dummy keys, or the admin user's when
    /// IAM is enforced.
    credentials: AccessKey,
    iam_enforced: bool,
}

/// Dummy credentials moto accepts; never real ones.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";
/// moto's default account, which every ARN it makes names.
pub const ACCOUNT_ID: &str = "123456789012";

/// Requests moto lets through unauthenticated when IAM is enforced: exactly the admin user's
/// CreateUser, PutUserPolicy and CreateAccessKey. Every later request is checked.
const ADMIN_SETUP_REQUESTS: u32 = 3;
/// The IAM user with an allow-all policy that sets up and inspects an IAM-enforced server.
pub const ADMIN_USER: &str = "gc-archive-test-admin";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("ephemeral listener has an address")
        .port()
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers HTTP.
    pub async fn start() -> MotoServer {
        Self::start_with_env(&[]).await
    }

    /// Same as [`MotoServer::start`] with extra environment for the server (e.g.
    /// `S3_UPLOAD_PART_MIN_SIZE`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> MotoServer {
        Self::spawn(env).await
    }

    /// moto with IAM enforced (`INITIAL_NO_AUTH_ACTION_COUNT`): only the first
    /// [`ADMIN_SETUP_REQUESTS`] requests pass unauthenticated, and they create [`ADMIN_USER`]
    /// (allow `*` on `*`). From then on the dummy keys are refused; [`MotoServer::sdk_config`]
    /// and the client helpers use the admin's key, and code under test gets a user with exactly
    /// its role's policy ([`crate::iam`]).
    pub async fn start_iam_enforced(env: &[(&str, &str)]) -> anyhow::Result<MotoServer> {
        let count = ADMIN_SETUP_REQUESTS.to_string();
        let mut all = env.to_vec();
        all.push(("INITIAL_NO_AUTH_ACTION_COUNT", count.as_str()));
        let mut server = Self::spawn(&all).await;
        let allow_all = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
        });
        let admin = crate::iam::create_users(
            &server.endpoint_url(),
            &server.credentials,
            &[(ADMIN_USER, &allow_all)],
        )
        .await?;
        server.credentials = admin.into_iter().next().expect("one key per user created");
        server.iam_enforced = true;
        Ok(server)
    }

    async fn spawn(env: &[(&str, &str)]) -> MotoServer {
        let exe = crate::venv::bin("moto_server");
        // A port found free can be taken before moto binds it; retry a few times.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&exe);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_DEFAULT_REGION", REGION)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn moto_server");
            let mut server = MotoServer {
                child,
                port,
                credentials: AccessKey {
                    id: ACCESS_KEY.into(),
                    secret: SECRET_KEY.into(),
                },
                iam_enforced: false,
            };
            if server.wait_ready(Duration::from_secs(20)).await {
                return server;
            }
            // Dropping kills it; try another port.
        }
        panic!("moto_server did not start on any of 5 ports");
    }

    async fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether IAM is enforced ([`MotoServer::start_iam_enforced`]).
    pub fn iam_enforced(&self) -> bool {
        self.iam_enforced
    }

    /// The key [`MotoServer::sdk_config`] signs with: the dummy one, or the admin user's.
    pub fn credentials(&self) -> &AccessKey {
        &self.credentials
    }

    /// An AWS SDK config pointed at this server with dummy credentials, or with the admin
    /// user's when IAM is enforced.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_as(&self.credentials).await
    }

    /// An AWS SDK config pointed at this server, signing with `key`.
    pub async fn sdk_config_as(&self, key: &AccessKey) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                key.id.clone(),
                key.secret.clone(),
                None,
                None,
                "moto",
            ))
            .load()
            .await
    }

    /// An S3 client with path-style addressing (moto on loopback has no virtual hosts).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            // Multipart objects carry composite checksums the SDK cannot validate on GET.
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk_config().await)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    pub async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    pub async fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.sdk_config().await)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
