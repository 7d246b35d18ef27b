//! Webhook caller authentication: a bearer token compared in constant time, or
//! an HMAC signature (SHA-1/256/512, hex or base64, a configurable header,
//! prefix and extraction regex, a payload prefix taken from the header by a
//! regex; GitHub, Stripe and Slack signing schemes).
//!
//! Every failure is one answer to the caller (401); the reason is kept for the
//! hook's `last_error` and the log, never echoed.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use regex::Regex;
use subtle::ConstantTimeEq;

use super::{HmacAlgorithm, HmacSettings, HookAuth, SignatureEncoding, SignedPayload};
use crate::automation::model::InvalidDefinition;

/// Header Slack puts the signed timestamp in.
pub const SLACK_TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The credential header is absent.
    #[error("missing {0} header")]
    Missing(String),
    /// The header is there but not in the expected shape.
    #[error("malformed {0} header")]
    Malformed(String),
    /// A timestamped signature is too old (or from the future).
    #[error("signature timestamp outside the allowed window")]
    Stale,
    /// Wrong token or signature.
    #[error("credential does not match")]
    Mismatch,
}

/// A hook's auth settings, compiled once when the hook is loaded.
#[derive(Debug, Clone)]
pub struct Verifier {
    auth: HookAuth,
    regex: Option<Regex>,
    /// Body signing: group 1 is signed before the body.
    prefix: Option<Regex>,
}

/// A regex whose group 1 is what is wanted; `None` when `text` is empty.
fn group_regex(text: &str, what: &str) -> Result<Option<Regex>, InvalidDefinition> {
    if text.is_empty() {
        return Ok(None);
    }
    let regex =
        Regex::new(text).map_err(|e| InvalidDefinition::Auth(format!("hmac {what} regex: {e}")))?;
    if regex.captures_len() < 2 {
        return Err(InvalidDefinition::Auth(format!(
            "hmac {what} regex needs a capture group (group 1 is used)"
        )));
    }
    Ok(Some(regex))
}

/// Checks settings without building a verifier.
pub fn validate(auth: &HookAuth) -> Result<(), InvalidDefinition> {
    Verifier::new(auth).map(|_| ())
}

impl Verifier {
    /// Compiles `auth`.
    pub fn new(auth: &HookAuth) -> Result<Self, InvalidDefinition> {
        let bad = |m: &str| Err(InvalidDefinition::Auth(m.to_owned()));
        let regex = match auth {
            HookAuth::Bearer { token } if token.len() < 16 => {
                return bad("bearer tokens need at least 16 characters");
            }
            HookAuth::Bearer { .. } => None,
            HookAuth::Hmac(settings) => {
                if settings.secret.is_empty() {
                    return bad("hmac secret must not be empty");
                }
                if axum::http::HeaderName::from_bytes(settings.header.as_bytes()).is_err() {
                    return bad("hmac header is not a valid header name");
                }
                group_regex(&settings.signature_regex, "signature")?
            }
        };
        let prefix = match auth {
            HookAuth::Hmac(settings) => {
                group_regex(&settings.payload_prefix_regex, "payload prefix")?
            }
            HookAuth::Bearer { .. } => None,
        };
        Ok(Self { auth: auth.clone(), regex, prefix })
    }

    /// Checks a request; `now_unix` is for timestamped schemes.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), AuthFailure> {
        match &self.auth {
            HookAuth::Bearer { token } => verify_bearer(token, headers),
            HookAuth::Hmac(settings) => self.verify_hmac(settings, headers, body, now_unix),
        }
    }

    fn verify_hmac(
        &self,
        settings: &HmacSettings,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), AuthFailure> {
        let value = header(headers, &settings.header)?;
        let (signed, candidates) = match settings.signed_payload {
            SignedPayload::Body => (self.body_payload(value, body), self.extract(settings, value)?),
            SignedPayload::Stripe => {
                let timestamp = value
                    .split(',')
                    .find_map(|part| part.trim().strip_prefix("t="))
                    .ok_or_else(|| AuthFailure::Malformed(settings.header.clone()))?;
                check_age(timestamp, settings.max_age_seconds, now_unix)?;
                let sigs: Vec<&str> = match &self.regex {
                    Some(regex) => regex
                        .captures_iter(value)
                        .filter_map(|c| c.get(1))
                        .map(|m| m.as_str())
                        .collect(),
                    None => value
                        .split(',')
                        .filter_map(|part| part.trim().strip_prefix("v1="))
                        .collect(),
                };
                (prefixed(format!("{timestamp}.").as_bytes(), body), sigs)
            }
            SignedPayload::Slack => {
                let timestamp = header(headers, SLACK_TIMESTAMP_HEADER)?;
                check_age(timestamp, settings.max_age_seconds, now_unix)?;
                (
                    prefixed(format!("v0:{timestamp}:").as_bytes(), body),
                    self.extract(settings, value)?,
                )
            }
        };
        if candidates.is_empty() {
            return Err(AuthFailure::Malformed(settings.header.clone()));
        }
        let decoded: Vec<Vec<u8>> =
            candidates.iter().filter_map(|sig| decode(sig, settings.encoding)).collect();
        if decoded.is_empty() {
            return Err(AuthFailure::Malformed(settings.header.clone()));
        }
        let key = settings.secret.as_bytes();
        if decoded.iter().any(|sig| mac_matches(settings.algorithm, key, &signed, sig)) {
            Ok(())
        } else {
            Err(AuthFailure::Mismatch)
        }
    }

    /// What a body signature covers: the body, after `<group 1>.` of the
    /// payload prefix regex when it matches the header value.
    fn body_payload(&self, value: &str, body: &[u8]) -> Vec<u8> {
        let group = self.prefix.as_ref().and_then(|re| re.captures(value)).and_then(|c| c.get(1));
        match group.filter(|m| !m.as_str().is_empty()) {
            Some(m) => prefixed(format!("{}.", m.as_str()).as_bytes(), body),
            None => body.to_vec(),
        }
    }

    /// The signature(s) in a header value: regex group 1, else the value minus its prefix.
    fn extract<'a>(
        &self,
        settings: &HmacSettings,
        value: &'a str,
    ) -> Result<Vec<&'a str>, AuthFailure> {
        if let Some(regex) = &self.regex {
            return Ok(regex
                .captures_iter(value)
                .filter_map(|c| c.get(1))
                .map(|m| m.as_str())
                .collect());
        }
        let value = value.trim();
        match value.strip_prefix(settings.signature_prefix.as_str()) {
            Some(sig) => Ok(vec![sig]),
            None => Err(AuthFailure::Malformed(settings.header.clone())),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, AuthFailure> {
    let value = headers.get(name).ok_or_else(|| AuthFailure::Missing(name.to_owned()))?;
    value.to_str().map_err(|_| AuthFailure::Malformed(name.to_owned()))
}

fn verify_bearer(token: &str, headers: &HeaderMap) -> Result<(), AuthFailure> {
    let value = header(headers, "authorization")?;
    let presented = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| AuthFailure::Malformed("Authorization".into()))?;
    if bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(AuthFailure::Mismatch)
    }
}

fn check_age(timestamp: &str, max_age_seconds: u32, now_unix: i64) -> Result<(), AuthFailure> {
    let at: i64 = timestamp.trim().parse().map_err(|_| AuthFailure::Stale)?;
    if max_age_seconds == 0 {
        return Ok(());
    }
    // An absurd timestamp (an overflowing difference) is stale, not fresh.
    match now_unix.checked_sub(at).map(i64::unsigned_abs) {
        Some(age) if age <= u64::from(max_age_seconds) => Ok(()),
        _ => Err(AuthFailure::Stale),
    }
}

fn prefixed(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(body);
    out
}

fn decode(signature: &str, encoding: SignatureEncoding) -> Option<Vec<u8>> {
    let signature = signature.trim();
    match encoding {
        SignatureEncoding::Hex => hex::decode(signature).ok(),
        SignatureEncoding::Base64 => {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(signature).ok())
        }
    }
}

/// Constant-time comparison of `expected` against the HMAC of `message`.
fn mac_matches(algorithm: HmacAlgorithm, key: &[u8], message: &[u8], expected: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(key: &[u8], message: &[u8], expected: &[u8]) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else { return false };
        mac.update(message);
        mac.verify_slice(expected).is_ok()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => check::<Hmac<sha1::Sha1>>(key, message, expected),
        HmacAlgorithm::Sha256 => check::<Hmac<sha2::Sha256>>(key, message, expected),
        HmacAlgorithm::Sha512 => check::<Hmac<sha2::Sha512>>(key, message, expected),
    }
}

/// The raw HMAC of `message` (for signing test requests).
pub fn mac(algorithm: HmacAlgorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn compute<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => compute::<Hmac<sha1::Sha1>>(key, message),
        HmacAlgorithm::Sha256 => compute::<Hmac<sha2::Sha256>>(key, message),
        HmacAlgorithm::Sha512 => compute::<Hmac<sha2::Sha512>>(key, message),
    }
}

/// Headers that authenticate `body` for `auth` at `now_unix`, as a sender
/// would set them (`ductorctl webhook test`, tests).
pub fn sign(auth: &HookAuth, body: &[u8], now_unix: i64) -> Vec<(String, String)> {
    match auth {
        HookAuth::Bearer { token } => vec![("Authorization".into(), format!("Bearer {token}"))],
        HookAuth::Hmac(s) => {
            let encode = |raw: Vec<u8>| match s.encoding {
                SignatureEncoding::Hex => hex::encode(raw),
                SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(raw),
            };
            let key = s.secret.as_bytes();
            match s.signed_payload {
                SignedPayload::Body => {
                    let sig = encode(mac(s.algorithm, key, body));
                    vec![(s.header.clone(), format!("{}{sig}", s.signature_prefix))]
                }
                SignedPayload::Stripe => {
                    let sig = encode(mac(
                        s.algorithm,
                        key,
                        &prefixed(format!("{now_unix}.").as_bytes(), body),
                    ));
                    vec![(s.header.clone(), format!("t={now_unix},v1={sig}"))]
                }
                SignedPayload::Slack => {
                    let sig = encode(mac(
                        s.algorithm,
                        key,
                        &prefixed(format!("v0:{now_unix}:").as_bytes(), body),
                    ));
                    vec![
                        (SLACK_TIMESTAMP_HEADER.into(), now_unix.to_string()),
                        (s.header.clone(), format!("{}{sig}", s.signature_prefix)),
                    ]
                }
            }
        }
    }
}

/// A fresh random token (32 bytes, URL-safe base64).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    const NOW: i64 = 1_780_000_000;

    #[test]
    fn github_signature_known_vector() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let auth = HookAuth::Hmac(HmacSettings::github("It's a Secret to Everybody"));
        let v = Verifier::new(&auth).unwrap();
        let good = headers(&[(
            "X-Hub-Signature-256".into(),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".into(),
        )]);
        assert_eq!(v.verify(&good, b"Hello, World!", NOW), Ok(()));
        assert_eq!(v.verify(&good, b"Hello, World?", NOW), Err(AuthFailure::Mismatch));
        let no_prefix = headers(&[("X-Hub-Signature-256".into(), "757107ea".into())]);
        assert!(matches!(
            v.verify(&no_prefix, b"Hello, World!", NOW),
            Err(AuthFailure::Malformed(_))
        ));
        assert!(matches!(v.verify(&HeaderMap::new(), b"x", NOW), Err(AuthFailure::Missing(_))));
    }

    #[test]
    fn every_algorithm_and_encoding_round_trips() {
        for algorithm in [HmacAlgorithm::Sha1, HmacAlgorithm::Sha256, HmacAlgorithm::Sha512] {
            for encoding in [SignatureEncoding::Hex, SignatureEncoding::Base64] {
                let auth = HookAuth::Hmac(HmacSettings {
                    algorithm,
                    encoding,
                    header: "X-Sig".into(),
                    signature_prefix: String::new(),
                    ..HmacSettings::github("s3cret")
                });
                let v = Verifier::new(&auth).unwrap();
                let signed = sign(&auth, b"{\"a\":1}", NOW);
                assert_eq!(
                    v.verify(&headers(&signed), b"{\"a\":1}", NOW),
                    Ok(()),
                    "{algorithm:?} {encoding:?}"
                );
                assert_eq!(
                    v.verify(&headers(&signed), b"{\"a\":2}", NOW),
                    Err(AuthFailure::Mismatch)
                );
            }
        }
    }

    #[test]
    fn stripe_scheme_checks_timestamp_and_any_v1() {
        let auth = HookAuth::Hmac(HmacSettings::stripe("whsec_test"));
        let v = Verifier::new(&auth).unwrap();
        let body = br#"{"type":"invoice.paid"}"#;
        let signed = sign(&auth, body, NOW);
        assert_eq!(v.verify(&headers(&signed), body, NOW + 10), Ok(()));
        // Stale.
        assert_eq!(v.verify(&headers(&signed), body, NOW + 301), Err(AuthFailure::Stale));
        // A second v1 (secret rotation) may be the matching one.
        let (name, value) = signed[0].clone();
        let rotated = value.replace(",v1=", ",v1=00ff,v1=");
        assert_eq!(v.verify(&headers(&[(name.clone(), rotated)]), body, NOW), Ok(()));
        // Forged: the signature was computed for another timestamp.
        let forged = value.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(v.verify(&headers(&[(name, forged)]), body, NOW), Err(AuthFailure::Mismatch));
    }

    #[test]
    fn slack_scheme() {
        let auth = HookAuth::Hmac(HmacSettings::slack("slack-secret"));
        let v = Verifier::new(&auth).unwrap();
        let signed = sign(&auth, b"{}", NOW);
        assert_eq!(v.verify(&headers(&signed), b"{}", NOW), Ok(()));
        let without_ts: Vec<_> =
            signed.iter().filter(|(k, _)| k != SLACK_TIMESTAMP_HEADER).cloned().collect();
        assert!(matches!(
            v.verify(&headers(&without_ts), b"{}", NOW),
            Err(AuthFailure::Missing(_))
        ));
    }

    #[test]
    fn regex_extraction() {
        let auth = HookAuth::Hmac(HmacSettings {
            header: "X-Signature".into(),
            signature_regex: r"sig=([0-9a-f]+)".into(),
            ..HmacSettings::github("k")
        });
        let v = Verifier::new(&auth).unwrap();
        let sig = hex::encode(mac(HmacAlgorithm::Sha256, b"k", b"{}"));
        let h = headers(&[("X-Signature".into(), format!("alg=sha256; sig={sig}"))]);
        assert_eq!(v.verify(&h, b"{}", NOW), Ok(()));
        let bad = HookAuth::Hmac(HmacSettings {
            signature_regex: "no-group".into(),
            ..HmacSettings::github("k")
        });
        assert!(Verifier::new(&bad).is_err());
    }

    #[test]
    fn a_payload_prefix_from_the_header_is_signed_before_the_body() {
        let auth = HookAuth::Hmac(HmacSettings {
            header: "X-Sig".into(),
            signature_regex: r"v1=([0-9a-f]+)".into(),
            payload_prefix_regex: r"t=(\d+)".into(),
            ..HmacSettings::github("k")
        });
        let v = Verifier::new(&auth).unwrap();
        let sig = hex::encode(mac(HmacAlgorithm::Sha256, b"k", b"123.{}"));
        let h = headers(&[("X-Sig".into(), format!("t=123,v1={sig}"))]);
        assert_eq!(v.verify(&h, b"{}", NOW), Ok(()));
        let body_only = hex::encode(mac(HmacAlgorithm::Sha256, b"k", b"{}"));
        let h = headers(&[("X-Sig".into(), format!("t=123,v1={body_only}"))]);
        assert_eq!(v.verify(&h, b"{}", NOW), Err(AuthFailure::Mismatch));
        // No match: the body alone is signed (as Python ductor did).
        let h = headers(&[("X-Sig".into(), format!("v1={body_only}"))]);
        assert_eq!(v.verify(&h, b"{}", NOW), Ok(()));
        let bad = HookAuth::Hmac(HmacSettings {
            payload_prefix_regex: "no-group".into(),
            ..HmacSettings::github("k")
        });
        assert!(Verifier::new(&bad).is_err());
    }

    #[test]
    fn bearer() {
        let token = generate_token();
        let auth = HookAuth::Bearer { token: token.clone() };
        let v = Verifier::new(&auth).unwrap();
        assert_eq!(v.verify(&headers(&sign(&auth, b"", NOW)), b"", NOW), Ok(()));
        let wrong = headers(&[("Authorization".into(), format!("Bearer {token}x"))]);
        assert_eq!(v.verify(&wrong, b"", NOW), Err(AuthFailure::Mismatch));
        let basic = headers(&[("Authorization".into(), "Basic abc".into())]);
        assert!(matches!(v.verify(&basic, b"", NOW), Err(AuthFailure::Malformed(_))));
        assert!(Verifier::new(&HookAuth::Bearer { token: "short".into() }).is_err());
    }

    #[test]
    fn an_overflowing_timestamp_is_stale() {
        assert!(check_age(&i64::MIN.to_string(), 300, i64::MAX).is_err());
        assert!(check_age(&i64::MAX.to_string(), 300, -10).is_err());
        assert!(check_age("1000", 300, 1200).is_ok());
        assert!(check_age("1000", 300, 1301).is_err());
        assert!(check_age(&i64::MIN.to_string(), 0, 5).is_ok(), "0 = no check");
    }
}
