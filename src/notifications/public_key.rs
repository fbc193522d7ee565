//! The RSA public keys that sign notifications (OSS's callback key, the key of MNS's
//! certificate) and the PKCS#1 v1.5 check both senders use. OpenSSL does the arithmetic: an OSS
//! callback is checked on every upload (and every forged one costs a check too), and OpenSSL's
//! RSA verification takes a fifth of the time of the pure-Rust `rsa` crate's
//! (`cargo bench --bench signatures`).

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use openssl::x509::X509;

use super::oss::SignatureError;

/// The largest modulus accepted, as the `rsa` crate bounds it: a key served from an allowed
/// URL should still not make each check arbitrarily slow.
const MAX_BITS: u32 = 4096;

/// An RSA public key, parsed once and kept by [`super::keys`].
pub struct PublicKey(PKey<Public>);

impl PublicKey {
    /// An SPKI (`BEGIN PUBLIC KEY`, what OSS publishes) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<PublicKey, SignatureError> {
        let pem = pem.trim().as_bytes();
        let key = if pem.starts_with(b"-----BEGIN RSA PUBLIC KEY-----") {
            Rsa::public_key_from_pem_pkcs1(pem).and_then(PKey::from_rsa)
        } else {
            PKey::public_key_from_pem(pem)
        };
        key.ok()
            .and_then(Self::rsa)
            .ok_or(SignatureError::BadKey("not an RSA public key in PEM"))
    }

    /// The key of a PEM X.509 certificate. The certificate's validity period is deliberately
    /// not checked: MNS still signs with a certificate that expired long ago, and trust comes
    /// from where the certificate was fetched, not from a chain.
    pub fn from_cert_pem(pem: &str) -> Result<PublicKey, SignatureError> {
        let cert = X509::from_pem(pem.trim().as_bytes())
            .map_err(|_| SignatureError::BadKey("not an X.509 certificate in PEM"))?;
        cert.public_key()
            .ok()
            .and_then(Self::rsa)
            .ok_or(SignatureError::BadKey(
                "certificate does not hold an RSA public key",
            ))
    }

    fn rsa(key: PKey<Public>) -> Option<PublicKey> {
        (key.id() == Id::RSA && key.bits() <= MAX_BITS).then_some(PublicKey(key))
    }

    /// Checks an RSA PKCS#1 v1.5 `signature` over the `digest` of `signed`.
    pub fn verify(
        &self,
        digest: MessageDigest,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let mut verifier = Verifier::new(digest, &self.0).map_err(|_| SignatureError::Mismatch)?;
        match verifier.verify_oneshot(signature, signed) {
            Ok(true) => Ok(()),
            _ => Err(SignatureError::Mismatch),
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.0.public_eq(&other.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA, {} bits)", self.0.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    fn pem_of(key: &PKey<openssl::pkey::Private>) -> String {
        String::from_utf8(key.public_key_to_pem().unwrap()).unwrap()
    }

    #[test]
    fn only_rsa_keys_up_to_the_size_bound_are_taken() {
        let largest = PKey::from_rsa(Rsa::generate(MAX_BITS).unwrap()).unwrap();
        assert!(PublicKey::from_pem(&pem_of(&largest)).is_ok());
        let larger = PKey::from_rsa(Rsa::generate(MAX_BITS + 64).unwrap()).unwrap();
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        for refused in [larger, ec] {
            assert!(matches!(
                PublicKey::from_pem(&pem_of(&refused)),
                Err(SignatureError::BadKey(_))
            ));
        }
    }
}
