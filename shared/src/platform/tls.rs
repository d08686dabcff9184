//! The process's TLS crypto: rustls with its own `ring` provider, installed
//! once as the default for every HTTPS client (the SDK's connector and the
//! OAuth client). JWT signatures are not done here: jsonwebtoken verifies
//! them with its own RustCrypto provider (`identity::token`).

use std::sync::Once;

/// Install rustls's `ring` provider as the process default. Idempotent;
/// cheap after the first call.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider is already installed, which is then the
        // one in use (nothing in Keel installs another).
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
