//! A repository in an OCI registry, through the ORAS project's client (`oci-client`), on a
//! runtime of its own: callers are plain threads (the CLI, a host's follower).

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::artifact::{Blob, Descriptor, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use super::store::{Bounded, Store};
use super::{auth, FleetError, RegistryOptions, MAX_MANIFEST_SIZE};

/// A repository in a registry.
pub struct Registry {
    client: Client,
    runtime: tokio::runtime::Runtime,
    auth: RegistryAuth,
    registry: String,
    repository: String,
}

/// Whether `registry` (`HOST` or `HOST:PORT`) is a loopback address or `localhost`.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    /// A client of `registry`'s `repository`, with the credentials the Docker/OCI config file
    /// has for it.
    ///
    /// # Errors
    ///
    /// [`FleetError::Registry`] if the credentials cannot be read or the runtime started.
    pub fn connect(
        registry: &str,
        repository: &str,
        options: &RegistryOptions,
    ) -> Result<Self, FleetError> {
        let fail = |step: &str, message: String| FleetError::Registry {
            reference: format!("oci://{registry}/{repository}"),
            step: step.to_owned(),
            message,
        };
        // The client's TLS is rustls on the provider the host uses everywhere (ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = options
            .roots
            .iter()
            .map(|path| {
                std::fs::read(path)
                    .map(|data| Certificate {
                        encoding: CertificateEncoding::Pem,
                        data,
                    })
                    .map_err(|e| {
                        fail(
                            "reading [host] tls_roots",
                            format!("{}: {e}", path.display()),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = |protocol| {
            Client::new(ClientConfig {
                protocol,
                connect_timeout: Some(Duration::from_secs(10)),
                read_timeout: Some(Duration::from_secs(60)),
                platform_resolver: None,
                extra_root_certificates: roots.clone(),
                ..ClientConfig::default()
            })
        };
        let auth = match auth::credentials(registry).map_err(|e| fail("credentials", e))? {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("starting the client", e.to_string()))?;
        let https = client(ClientProtocol::Https);
        let plain_allowed = is_loopback(registry) || options.insecure.iter().any(|r| r == registry);
        let client = if plain_allowed {
            // As `docker` does for such a registry: TLS if it speaks it, else plain HTTP — only
            // when it answered the TLS handshake with something that is not TLS, never past a
            // certificate that does not verify or a network that failed.
            let probe = Reference::with_tag(
                registry.to_owned(),
                repository.to_owned(),
                "latest".to_owned(),
            );
            match runtime.block_on(https.auth(&probe, &auth, RegistryOperation::Pull)) {
                Err(e) if speaks_no_tls(&e) => {
                    tracing::debug!(target: "airlock::fleet", registry, "no TLS ({e}); plain HTTP");
                    client(ClientProtocol::HttpsExcept(vec![registry.to_owned()]))
                }
                _ => https,
            }
        } else {
            https
        };
        Ok(Self {
            client,
            runtime,
            auth,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
        })
    }

    fn reference(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        } else {
            Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        }
    }

    fn fail(&self, step: String, e: impl std::error::Error + 'static) -> FleetError {
        self.failed(step, describe(&e))
    }

    fn failed(&self, step: String, message: String) -> FleetError {
        FleetError::Registry {
            reference: format!("oci://{}/{}", self.registry, self.repository),
            step,
            message,
        }
    }
}

impl Registry {
    /// The client checks a blob's digest as its last bytes arrive: a mismatch is said as one,
    /// the rest as the registry's failure.
    fn stream_error(&self, descriptor: &Descriptor, e: std::io::Error) -> FleetError {
        let text = e.to_string();
        if text.contains("Invalid digest") {
            let actual = text
                .rsplit("got ")
                .next()
                .filter(|d| d.starts_with("sha256:"))
                .unwrap_or("another digest");
            return self.mismatch("blob", descriptor.digest.clone(), actual.trim().to_owned());
        }
        self.fail(format!("fetching blob {}", descriptor.digest), e)
    }

    fn mismatch(&self, what: &str, expected: String, actual: String) -> FleetError {
        FleetError::Digest {
            reference: format!("oci://{}/{}", self.registry, self.repository),
            what: what.to_owned(),
            expected,
            actual,
        }
    }
}

/// An error and what caused it, in order: the client wraps its causes in I/O errors within
/// I/O errors, whose `source` skips the error each wraps, so those are opened by hand.
fn causes<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static))
            .or_else(|| e.source())
    })
}

/// An error with what caused it ("error sending request: … invalid peer certificate: …").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e).fold(String::new(), |text, cause| {
        let said = cause.to_string();
        match text.is_empty() {
            true => said,
            false if text.contains(&said) => text,
            false => format!("{text}: {said}"),
        }
    })
}

/// Whether an HTTPS request failed because the server answered something that is not TLS (a
/// plain HTTP registry): the one failure after which plain HTTP is tried.
fn speaks_no_tls(e: &OciDistributionError) -> bool {
    causes(e).any(|cause| {
        matches!(
            cause.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidMessage(_))
        )
    })
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        artifact_type: None,
    }
}

impl Store for Registry {
    fn manifest(&mut self, reference: &str) -> Result<Vec<u8>, FleetError> {
        let image = self.reference(reference);
        let (bytes, _) = self
            .runtime
            .block_on(self.client.pull_manifest_raw(
                &image,
                &self.auth,
                &[MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE],
            ))
            .map_err(|e| match e {
                OciDistributionError::DigestError(DigestError::VerificationError {
                    expected,
                    actual,
                }) => self.mismatch("manifest", expected, actual),
                e => self.fail(format!("fetching manifest {reference}"), e),
            })?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(self.failed(
                format!("fetching manifest {reference}"),
                format!(
                    "{} bytes, over the {MAX_MANIFEST_SIZE} a manifest may have",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn blob(
        &mut self,
        descriptor: &Descriptor,
        out: &mut dyn Write,
        max: u64,
    ) -> Result<(), FleetError> {
        let step = || format!("fetching blob {}", descriptor.digest);
        let image = self.reference(&descriptor.digest);
        let layer = oci_descriptor(descriptor);
        let mut out = Bounded { out, left: max };
        self.runtime.block_on(async {
            let mut stream = self
                .client
                .pull_blob_stream(&image, &layer)
                .await
                .map_err(|e| self.fail(step(), e))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.stream_error(descriptor, e))?;
                out.write_all(&chunk).map_err(|e| self.fail(step(), e))?;
            }
            Ok(())
        })
    }

    fn tags(&mut self) -> Result<Vec<String>, FleetError> {
        let image = self.reference("latest");
        let mut tags = Vec::new();
        // Pages of 1000, as the distribution spec allows a registry to cut them.
        loop {
            let last = tags.last().cloned();
            let page = self
                .runtime
                .block_on(
                    self.client
                        .list_tags(&image, &self.auth, Some(1000), last.as_deref()),
                )
                .map_err(|e| self.fail("listing tags".to_owned(), e))?;
            let full = page.tags.len() >= 1000;
            tags.extend(page.tags);
            if !full || tags.len() > 100_000 {
                return Ok(tags);
            }
        }
    }

    fn push_blob(&mut self, blob: &Blob) -> Result<(), FleetError> {
        let image = self.reference("latest");
        let digest = &blob.descriptor.digest;
        let step = || format!("pushing blob {digest}");
        self.runtime.block_on(async {
            self.client
                .store_auth_if_needed(&self.registry, &self.auth)
                .await;
            let there = self
                .client
                .blob_exists(&image, digest)
                .await
                .unwrap_or(false);
            if !there {
                self.client
                    .push_blob(&image, blob.bytes.clone(), digest)
                    .await
                    .map_err(|e| self.fail(step(), e))?;
            }
            Ok(())
        })
    }

    fn push_manifest(&mut self, manifest: &Blob, tag: Option<&str>) -> Result<(), FleetError> {
        let media_type = http::HeaderValue::from_str(&manifest.descriptor.media_type)
            .map_err(|e| self.fail("pushing the manifest".to_owned(), e))?;
        for name in std::iter::once(manifest.descriptor.digest.as_str()).chain(tag) {
            let image = self.reference(name);
            self.runtime
                .block_on(async {
                    self.client
                        .store_auth_if_needed(&self.registry, &self.auth)
                        .await;
                    self.client
                        .push_manifest_raw(&image, manifest.bytes.clone(), media_type.clone())
                        .await
                })
                .map_err(|e| self.fail(format!("pushing the manifest as {name}"), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_loopback() {
        for loopback in [
            "127.0.0.1:5000",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "127.9.9.9",
        ] {
            assert!(is_loopback(loopback), "{loopback}");
        }
        for remote in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.evil.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
