//! TLS for every connection CommandBridge makes or accepts: the client's to the server, the
//! verifier's and the webhook's to the outside, and the server's own listener.
//!
//! One crypto provider (rustls with ring) for the whole process. Trust is the system's roots plus,
//! where configured, the certificates of one extra CA file (private PKI); nothing here can turn
//! verification off. A certificate that fails verification is described by its cause (unknown
//! CA, wrong host, expired), because rustls' own text ("invalid peer certificate: UnknownIssuer")
//! does not tell an operator what to do.

use rustls::{CertificateError, Error as RustlsError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Installs ring as the process's rustls provider. reqwest (built without a provider of its own)
/// and tokio-rustls both take the process default, so it must be in place before either builds a
/// configuration; installing twice is harmless.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first (by an embedding program): keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder that verifies servers against the system's roots plus the
/// certificates in `ca_file`. The error names the file and what is wrong with it.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, String> {
    install_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        for cert in ca_certificates(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// The certificates of a PEM file, for use as trust roots.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("{}: cannot read the CA file: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no certificate (expected PEM, '-----BEGIN CERTIFICATE-----')",
            path.display()
        ));
    }
    Ok(certs)
}

/// The server's TLS configuration from a PEM certificate chain and a PEM private key (PKCS#8,
/// PKCS#1 RSA or SEC1 EC). `cert_key` and `key_key` are the configuration keys the files came
/// from, so every error names both the key and the file.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    cert_key: &str,
    key_key: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    install_provider();
    let named = |key: &str, path: &Path, what: String| format!("{key} {}: {what}", path.display());
    let cert_pem = std::fs::read(cert_file)
        .map_err(|e| named(cert_key, cert_file, format!("cannot read it: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            named(
                cert_key,
                cert_file,
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(named(
            cert_key,
            cert_file,
            "holds no certificate (expected PEM, '-----BEGIN CERTIFICATE-----')".into(),
        ));
    }
    let key_pem = std::fs::read(key_file)
        .map_err(|e| named(key_key, key_file, format!("cannot read it: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        named(
            key_key,
            key_file,
            format!("no usable private key (PEM PKCS#8, RSA or EC): {e}"),
        )
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            RustlsError::InconsistentKeys(_) => format!(
                "{key_key} {} does not match the certificate in {cert_key} {}",
                key_file.display(),
                cert_file.display()
            ),
            other => named(key_key, key_file, other.to_string()),
        })?;
    // The listener speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why a TLS handshake failed, in the words an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The certificate chains to no trusted CA (a private CA not given as a CA file, or a
    /// self-signed certificate).
    UnknownCa,
    /// The certificate is valid, but for other names.
    WrongHost {
        expected: String,
        presented: Vec<String>,
    },
    Expired,
    NotYetValid,
    /// The peer does not speak TLS there (an http server on that port).
    NotTls,
    Other(String),
}

impl Failure {
    /// The TLS problem somewhere in `e`'s chain of causes, if that is what failed.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Option<Failure> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = next {
            if let Some(tls) = err.downcast_ref::<RustlsError>() {
                return Some(Failure::from_rustls(tls));
            }
            // io::Error's `source()` skips the error it wraps (and the TLS stack nests one
            // io::Error in another), which is where rustls' is: descend through `get_ref`.
            next = match err.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => err.source(),
            };
        }
        None
    }

    fn from_rustls(e: &RustlsError) -> Failure {
        match e {
            RustlsError::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => Failure::UnknownCa,
                CertificateError::NotValidForName => Failure::WrongHost {
                    expected: String::new(),
                    presented: Vec::new(),
                },
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => Failure::WrongHost {
                    expected: expected.to_str().into_owned(),
                    presented: presented.clone(),
                },
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Failure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Failure::NotYetValid
                }
                other => Failure::Other(format!("the certificate was refused: {other}")),
            },
            RustlsError::InvalidMessage(_) | RustlsError::InappropriateMessage { .. } => {
                Failure::NotTls
            }
            other => Failure::Other(other.to_string()),
        }
    }

    /// What went wrong, without advice (the caller knows which fix applies to it).
    pub fn cause(&self) -> String {
        match self {
            Failure::UnknownCa => "the server's certificate is signed by an unknown CA (not in \
                                   the system's trust roots nor the configured CA file)"
                .into(),
            Failure::WrongHost {
                expected,
                presented,
            } => {
                let names = if presented.is_empty() {
                    "other names".to_string()
                } else {
                    presented.join(", ")
                };
                let host = if expected.is_empty() {
                    "this host name".to_string()
                } else {
                    expected.clone()
                };
                format!("the server's certificate is not valid for {host} (it is for {names})")
            }
            Failure::Expired => "the server's certificate has expired".into(),
            Failure::NotYetValid => {
                "the server's certificate is not valid yet (check both machines' clocks)".into()
            }
            Failure::NotTls => {
                "the server does not speak TLS on that port (is it an http:// address?)".into()
            }
            Failure::Other(why) => why.clone(),
        }
    }

    /// What to do about it, as "; advice" to follow [`Failure::cause`]; `trust_fix` says how
    /// to trust a private CA where this connection is configured.
    pub fn fix(&self, trust_fix: &str) -> String {
        match self {
            Failure::UnknownCa => format!("; {trust_fix}"),
            Failure::WrongHost { .. } => "; use a host name the certificate names in the URL, or \
                                          issue the server a certificate for this one"
                .into(),
            Failure::Expired => "; renew the certificate on that server".into(),
            Failure::NotTls => "; use an http:// URL for it".into(),
            Failure::NotYetValid | Failure::Other(_) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_cause_is_found_behind_an_io_error() {
        // As hyper-rustls reports it: one io::Error inside another.
        let io = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            RustlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        assert_eq!(Failure::of(&io), Some(Failure::UnknownCa));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(Failure::of(&plain), None);
    }

    #[test]
    fn a_ca_file_error_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let err = ca_certificates(&missing).expect_err("missing");
        assert!(
            err.contains("nope.pem") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").expect("write");
        let err = ca_certificates(&empty).expect_err("no certificate");
        assert!(
            err.contains("empty.pem") && err.contains("no certificate"),
            "{err}"
        );
    }
}
