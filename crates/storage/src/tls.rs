//! TLS to Postgres, configured by the connection URL as libpq reads it:
//! `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`)
//! and `sslrootcert` (a PEM file of the certificate authorities to trust).
//! tokio-postgres knows only the first three modes and refuses
//! `sslrootcert`, so the URL is read here: the store hands tokio-postgres
//! the URL without them (a `verify-*` mode as `require`) and a rustls
//! connector that verifies what the mode asks.
//!
//! | `sslmode` | encrypted | the server's certificate |
//! | --- | --- | --- |
//! | absent, `disable` | no | |
//! | `prefer` | if the server offers it | not checked |
//! | `require` | yes, or no session | not checked |
//! | `verify-ca` | yes | signed by a CA of `sslrootcert` |
//! | `verify-full` | yes | as `verify-ca`, and names the host connected to |
//!
//! Unlike libpq, a URL without `sslmode` connects in plain text (libpq
//! would try TLS first): say `sslmode=require` or stronger for a server
//! across a network.

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach a server: the URL for tokio-postgres, and the TLS
/// connector its `sslmode` asks for (`None`: plain text).
#[derive(Clone)]
pub(crate) struct Reach {
    pub(crate) url: String,
    pub(crate) tls: Option<Tls>,
}

/// The rustls connector of a `sslmode` that asks for TLS.
#[derive(Clone)]
pub(crate) struct Tls(pub(crate) MakeRustlsConnect);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Reach {
    /// Reads `sslmode` and `sslrootcert` off `database_url`.
    pub(crate) fn of(database_url: &str) -> Result<Self, String> {
        let (base, query) = database_url
            .split_once('?')
            .map_or((database_url, ""), |(b, q)| (b, q));
        let mut kept: Vec<String> = Vec::new();
        let (mut mode, mut root) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => root = Some(percent_decoded(value)),
                _ => kept.push(pair.to_owned()),
            }
        }
        // What to verify, and the mode tokio-postgres knows for it.
        let (verify, known) = match mode.as_deref() {
            None | Some("disable") => (None, None),
            Some("prefer") => (Some(Verify::Nothing), Some("prefer")),
            Some("require") => (Some(Verify::Nothing), Some("require")),
            Some("verify-ca") => (Some(Verify::Chain), Some("require")),
            Some("verify-full") => (Some(Verify::ChainAndName), Some("require")),
            Some(other) => return Err(format!("unknown sslmode {other:?}")),
        };
        kept.extend(known.map(|mode| format!("sslmode={mode}")));
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let tls = verify
            .map(|verify| connector(verify, root.as_deref()))
            .transpose()?;
        Ok(Self { url, tls })
    }

    /// A connection, over TLS where the URL asks for it.
    pub(crate) async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&e));
        match &self.tls {
            None => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let (client, connection) = tokio_postgres::connect(&self.url, tls.0.clone())
                    .await
                    .map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

impl Reach {
    /// A tokio-postgres client, over TLS where the URL asks for it, its
    /// connection driven by a task of its own that hands every message
    /// the server sends unasked (a notification) to `on_message`, and ends
    /// with the session.
    pub(crate) async fn client(
        &self,
        on_message: impl FnMut(tokio_postgres::AsyncMessage) + Send + 'static,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
                drive(connection, on_message);
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tls.0.clone()).await?;
                drive(connection, on_message);
                Ok(client)
            }
        }
    }
}

/// `error` and its causes, `: `-separated: tokio-postgres says only
/// "error performing TLS handshake", its cause says which certificate
/// check failed.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// Polls `connection` on a task of its own until the session ends.
fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    mut on_message: impl FnMut(tokio_postgres::AsyncMessage) + Send + 'static,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(message)) => on_message(message),
                Some(Err(error)) => {
                    tracing::debug!(%error, "a database session ended");
                    return;
                }
                None => return,
            }
        }
    });
}

/// A tokio-postgres client of `database_url`, with the store's TLS
/// settings (see the module `tls`), as [`Reach::client`]: for a session
/// beside a store, such as the outbox relay's `LISTEN`.
pub async fn client(
    database_url: &str,
    on_message: impl FnMut(tokio_postgres::AsyncMessage) + Send + 'static,
) -> Result<tokio_postgres::Client, domain::BoxError> {
    Ok(Reach::of(database_url)?.client(on_message).await?)
}

/// A connection to `database_url` with the store's TLS settings (see the
/// module `tls`): for code that needs a plain session beside a store (a
/// test's set-up, an admin task) and must reach the same servers.
pub async fn connect(database_url: &str) -> Result<AsyncPgConnection, ConnectionError> {
    Reach::of(database_url)
        .map_err(ConnectionError::InvalidConnectionUrl)?
        .connect()
        .await
}

/// What to check of the server's certificate.
#[derive(Debug, Clone, Copy)]
enum Verify {
    /// Nothing (`prefer`, `require`): encryption against eavesdroppers,
    /// no protection against a server in the middle.
    Nothing,
    /// Its chain, up to a CA of `sslrootcert`.
    Chain,
    /// Its chain, and that it names the host.
    ChainAndName,
}

fn connector(verify: Verify, root: Option<&str>) -> Result<Tls, String> {
    #[expect(
        deprecated,
        reason = "ring, not aws-lc-rs: no cmake and minutes less of build; Postgres needs no \
                  post-quantum key exchange"
    )]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Verify::Chain | Verify::ChainAndName => {
            let path = root.ok_or(
                "sslmode=verify-ca and verify-full need sslrootcert: the CA file to trust \
                 (a managed Postgres publishes its own)",
            )?;
            let mut roots = rustls::RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                roots
                    .add(certificate)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {path} holds no certificate"));
            }
            let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| e.to_string())?;
            let verifier: Arc<dyn ServerCertVerifier> = match verify {
                Verify::Chain => Arc::new(AnyName(chain)),
                _ => chain,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(Tls(MakeRustlsConnect::new(config)))
}

/// `sslrootcert`'s value, decoded where the URL escaped it (`%2F`).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `verify-ca`: the chain must reach a trusted CA; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: any certificate; the handshake's signatures
/// are still checked, so the session is encrypted to whoever answered.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_leave_the_url_and_pick_the_connector() {
        let plain = Reach::of("postgres://u@h:5432/db?application_name=x").unwrap();
        assert_eq!(plain.url, "postgres://u@h:5432/db?application_name=x");
        assert!(plain.tls.is_none());
        let required = Reach::of("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(required.url, "postgres://u@h/db?sslmode=require");
        assert!(required.tls.is_some());
        let disabled = Reach::of("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(disabled.url, "postgres://u@h/db");
        assert!(disabled.tls.is_none());
    }

    #[test]
    fn verification_needs_a_readable_root_certificate() {
        let missing = Reach::of("postgres://u@h/db?sslmode=verify-full");
        assert!(missing.is_err_and(|e| e.contains("sslrootcert")));
        let unreadable =
            Reach::of("postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem");
        assert!(unreadable.is_err_and(|e| e.contains("/no/such.pem")));
        assert!(Reach::of("postgres://u@h/db?sslmode=sometimes").is_err());
    }
}
