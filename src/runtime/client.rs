//! The connection to one ClickHouse server over HTTP(S), through the
//! `clickhouse` crate's transport.
//!
//! Everything chmigrate reads comes back as `JSONEachRow` (set with the
//! `default_format` URL parameter, which 18.16 honours for every statement,
//! DDL included) and is decoded with serde_json. The crate's typed row
//! decoding validates types with `RowBinaryWithNamesAndTypes`, a format
//! 18.16 does not have, so validation is turned off and typed rows are not
//! used: JSON reads the same on 18.16 and on current versions.
//!
//! The password is held in a [`Secret`] and handed only to the crate's
//! authentication; errors and logs name the URL and user, never the password.

use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::de::DeserializeOwned;

use super::error::{ChError, classify};
use super::transport::Bounded;
use crate::config::CaSource;
use crate::model::secret::Secret;

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub user: String,
    pub password: Option<Secret>,
    /// Extra CA certificates (PEM) trusted besides the public roots: a
    /// file, or text held in memory.
    pub ca: Option<CaSource>,
    /// Verify the server's certificate (on by default).
    pub tls_verify: bool,
    /// Longest time one request may take before it is abandoned.
    pub request_timeout: Duration,
    /// Longest time to set up a connection (TCP and TLS together).
    pub connect_timeout: Duration,
    /// Largest response read; a larger one fails the request.
    pub max_response_bytes: u64,
}

impl Endpoint {
    pub fn new(url: impl Into<String>) -> Self {
        Endpoint {
            url: url.into(),
            user: "default".into(),
            password: None,
            ca: None,
            tls_verify: true,
            request_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: super::transport::MAX_RESPONSE_BYTES,
        }
    }

    /// The same server credentials at another URL (another replica).
    pub fn with_url(&self, url: impl Into<String>) -> Self {
        Endpoint {
            url: url.into(),
            ..self.clone()
        }
    }
}

/// A connection (a pool of keep-alive HTTP connections) to one server.
#[derive(Clone)]
pub struct Connection {
    client: Client,
    endpoint: Arc<Endpoint>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.endpoint.url)
            .field("user", &self.endpoint.user)
            .finish()
    }
}

/// Accepts any certificate: only for `tls_verify: false`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificates of a PEM file or text, and what to call it in messages.
fn ca_certificates(ca: &CaSource) -> Result<(String, Vec<CertificateDer<'static>>), String> {
    let (origin, certs): (String, Vec<_>) = match ca {
        CaSource::File(path) => {
            let origin = path.display().to_string();
            let iter = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{origin}: cannot read CA file: {e}"))?;
            (origin, iter.collect())
        }
        CaSource::Pem(p) => (
            p.origin.clone(),
            CertificateDer::pem_slice_iter(p.pem.as_bytes()).collect(),
        ),
    };
    let certs = certs
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{origin}: bad PEM: {e}"))?;
    Ok((origin, certs))
}

fn tls_config(
    ca: Option<&CaSource>,
    verify: bool,
    url: &str,
) -> Result<rustls::ClientConfig, ChError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |reason: String| ChError::Tls {
        url: url.to_string(),
        reason,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    if !verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        let (origin, certs) = ca_certificates(ca).map_err(tls_err)?;
        if certs.is_empty() {
            return Err(tls_err(format!("{origin}: no CA certificate")));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("{origin}: bad CA certificate: {e}")))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Escapes `?` for the crate's parameter binding (chmigrate binds nothing).
fn raw_sql(sql: &str) -> String {
    sql.replace('?', "??")
}

impl Connection {
    /// Builds the HTTP(S) client; connects lazily.
    pub fn new(endpoint: Endpoint) -> Result<Self, ChError> {
        let url = endpoint.url.clone();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ChError::Config(format!(
                "{url:?} must start with http:// or https://"
            )));
        }
        let mut http = HttpConnector::new();
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.set_connect_timeout(Some(endpoint.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = tls_config(endpoint.ca.as_ref(), endpoint.tls_verify, &url)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let bounded = Bounded {
            inner: https,
            limit: endpoint.connect_timeout,
            max_response_bytes: endpoint.max_response_bytes,
        };
        let hyper = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(bounded);
        let mut client = Client::with_http_client(hyper)
            .with_url(url)
            .with_user(endpoint.user.clone())
            .with_validation(false)
            .with_setting("output_format_json_quote_64bit_integers", "0");
        if let Some(pw) = &endpoint.password {
            client = client.with_password(pw.expose());
        }
        Ok(Connection {
            client,
            endpoint: Arc::new(endpoint),
        })
    }

    /// The same connection with `database` as the current database of its
    /// queries (the HTTP `database` parameter): unqualified names in them
    /// mean tables of `database`. Nothing is sent until it is used, and the
    /// database must exist by then.
    pub fn in_database(&self, database: &str) -> Connection {
        Connection {
            client: self.client.clone().with_database(database),
            endpoint: self.endpoint.clone(),
        }
    }

    pub fn url(&self) -> &str {
        &self.endpoint.url
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn query(&self, sql: &str, settings: &[(&str, String)]) -> clickhouse::query::Query {
        let mut q = self.client.query(&raw_sql(sql));
        for (k, v) in settings {
            q = q.with_setting(*k, v.clone());
        }
        q
    }

    /// Runs a statement and returns its whole text output (JSONEachRow).
    pub async fn text(&self, sql: &str, settings: &[(&str, String)]) -> Result<String, ChError> {
        let fut = async {
            let mut cursor = self
                .query(sql, settings)
                .fetch_bytes("JSONEachRow")
                .map_err(|e| classify(e, &self.endpoint.url))?;
            let bytes = cursor
                .collect()
                .await
                .map_err(|e| classify(e, &self.endpoint.url))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.endpoint.request_timeout, fut).await;
        // The statement's first word only: statements may carry secrets.
        tracing::debug!(
            url = %self.endpoint.url,
            verb = sql.split_whitespace().next().unwrap_or(""),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        match result {
            Ok(r) => r,
            Err(_) => Err(ChError::Timeout {
                url: self.endpoint.url.clone(),
                after: self.endpoint.request_timeout,
            }),
        }
    }

    /// Runs a statement, ignoring its output.
    pub async fn execute(&self, sql: &str) -> Result<(), ChError> {
        self.text(sql, &[]).await.map(|_| ())
    }

    /// Runs a statement with settings, ignoring its output.
    pub async fn execute_with(
        &self,
        sql: &str,
        settings: &[(&str, String)],
    ) -> Result<(), ChError> {
        self.text(sql, settings).await.map(|_| ())
    }

    /// Runs a query and decodes each JSON line as `T`.
    pub async fn rows<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, ChError> {
        let text = self.text(sql, &[]).await?;
        parse_rows(&text).map_err(|e| ChError::Decode {
            url: self.endpoint.url.clone(),
            reason: format!("{e} (query: {})", first_line(sql)),
        })
    }

    /// Inserts rows as JSONEachRow after `head` (`INSERT INTO t FORMAT JSONEachRow`).
    pub async fn insert_json<T: serde::Serialize>(
        &self,
        head: &str,
        rows: &[T],
        settings: &[(&str, String)],
    ) -> Result<(), ChError> {
        let mut body = String::from(head);
        body.push('\n');
        for r in rows {
            let line = serde_json::to_string(r).map_err(|e| ChError::Decode {
                url: self.endpoint.url.clone(),
                reason: e.to_string(),
            })?;
            body.push_str(&line);
            body.push('\n');
        }
        self.text(&body, settings).await.map(|_| ())
    }
}

/// Decodes JSONEachRow text.
pub fn parse_rows<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

fn first_line(sql: &str) -> String {
    sql.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_are_escaped_for_the_crate() {
        assert_eq!(raw_sql("SELECT '?' , ?fields"), "SELECT '??' , ??fields");
    }

    #[test]
    fn parses_json_each_row() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct R {
            n: u64,
        }
        let rows: Vec<R> = parse_rows("{\"n\":1}\n\n{\"n\":2}\n").unwrap();
        assert_eq!(rows, vec![R { n: 1 }, R { n: 2 }]);
    }

    #[test]
    fn rejects_non_http_urls_and_bad_ca_files() {
        assert!(matches!(
            Connection::new(Endpoint::new("tcp://x:9000")),
            Err(ChError::Config(_))
        ));
        let mut e = Endpoint::new("https://127.0.0.1:8443");
        e.ca = Some(CaSource::File("/nonexistent/ca.pem".into()));
        assert!(matches!(
            Connection::new(e.clone()),
            Err(ChError::Tls { .. })
        ));
        // CA text held in memory: nothing in it, or not a certificate, is
        // an error naming where it came from.
        for pem in [
            "",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        ] {
            e.ca = Some(CaSource::Pem(crate::config::CaPem {
                origin: "Secret team-a/ca key ca.crt".into(),
                pem: pem.into(),
            }));
            match Connection::new(e.clone()) {
                Err(ChError::Tls { reason, .. }) => {
                    assert!(reason.contains("Secret team-a/ca key ca.crt"), "{reason}")
                }
                other => panic!("{pem:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_has_no_password() {
        let mut e = Endpoint::new("http://127.0.0.1:8123");
        e.password = Some(Secret::new("hunter2"));
        let c = Connection::new(e).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
