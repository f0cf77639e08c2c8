//! Twilio's request signature (`X-Twilio-Signature`): base64 of
//! HMAC-SHA1, keyed with the account's auth token, over the URL Twilio
//! requested. A WebSocket upgrade is a GET, so no body parameters are
//! appended: the URL with its query string is the whole message.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The URL Twilio signed: the configured public URL (what Twilio was given;
/// a proxy may have rewritten scheme and host) with the request's query.
pub fn signed_url(public_url: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => {
            let base = public_url.split_once('?').map_or(public_url, |(base, _)| base);
            format!("{base}?{q}")
        }
        _ => public_url.to_owned(),
    }
}

/// The signature Twilio sends for `url`.
pub fn sign(auth_token: &str, url: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's for `url`; compared in constant time.
pub fn verify(auth_token: &str, url: &str, signature: &str) -> bool {
    let Ok(claimed) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    mac.verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently with Python:
    // base64.b64encode(hmac.new(b"12345", url.encode(), hashlib.sha1).digest())
    const URL: &str = "wss://callwatch.example.com/ingest/twilio";
    const SIGNATURE: &str = "pFbdYpGWitsn4qLHSi5nvLWs+cI=";

    #[test]
    fn matches_an_independent_hmac_sha1() {
        assert_eq!(sign("12345", URL), SIGNATURE);
        assert!(verify("12345", URL, SIGNATURE));
    }

    #[test]
    fn a_wrong_token_url_or_signature_fails() {
        assert!(!verify("54321", URL, SIGNATURE));
        assert!(!verify(
            "12345",
            "wss://callwatch.example.com/ingest/twilio?x=1",
            SIGNATURE
        ));
        assert!(!verify("12345", URL, "not base64!"));
        assert!(!verify("12345", URL, ""));
    }

    #[test]
    fn the_query_string_is_part_of_the_signed_url() {
        assert_eq!(signed_url(URL, None), URL);
        assert_eq!(signed_url(URL, Some("")), URL);
        assert_eq!(signed_url(URL, Some("a=1&b=2")), format!("{URL}?a=1&b=2"));
        assert_eq!(signed_url(&format!("{URL}?old=1"), Some("a=1")), format!("{URL}?a=1"));
    }
}
