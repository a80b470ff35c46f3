//! Alibaba Cloud RPC signature, version 1.0 (HMAC-SHA1).
//!
//! The gateway recomputes the signature from the parameters it received, so the client and the
//! simulator must canonicalise byte for byte the same way. Both use this module: the client to
//! sign, the simulator to verify. Pure functions, no clock and no randomness: the caller supplies
//! `Timestamp` and `SignatureNonce`, which keeps every published test vector reproducible.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The parameter that carries the result; it is never part of what is signed.
pub const SIGNATURE_PARAM: &str = "Signature";

/// Percent-encodes per RFC 3986 the way the gateway does: unreserved `A-Z a-z 0-9 - _ . ~` stay,
/// every other UTF-8 byte becomes `%XY` with uppercase hex (so space is `%20`, `*` is `%2A`).
///
/// Form encoding (`+` for space, `*` kept, `~` escaped) would produce a different string to sign
/// and a `SignatureDoesNotMatch`, which is why no general-purpose encoder is used here.
pub fn percent_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() * 3);
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0F)] as char);
        }
    }
    out
}

/// Decodes a query-string or form component (`%XY` escapes, `+` as space), as the gateway's
/// servlet layer does before it recomputes the signature. Malformed escapes are kept literally
/// and invalid UTF-8 is replaced, so a hostile request can never make the simulator fail.
pub fn percent_decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Splits an `a=1&b=2` string into decoded pairs. A name without `=` gets an empty value, as
/// servlet containers do, so it is still signed.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (percent_decode(name), percent_decode(value)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// The canonicalised query string: every parameter except `Signature`, sorted by name,
/// each name and value percent-encoded, joined with `&`.
///
/// It doubles as the wire query string, so what is sent is exactly what was signed. Pairs with
/// the same name are ordered by value to keep the result deterministic.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != SIGNATURE_PARAM)
        .collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// `METHOD&%2F&percentEncode(canonical query)`: the text that is HMAC'd.
///
/// The method must be the one actually used on the wire (`POST` for dbswatch); an empty method is
/// allowed because one published vector uses it.
pub fn string_to_sign<K: AsRef<str>, V: AsRef<str>>(method: &str, params: &[(K, V)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// Base64(HMAC-SHA1(key, data)) with the key used exactly as given.
///
/// Exposed separately from [`sign`] because the published HMAC vectors use raw keys.
pub fn hmac_sha1_base64(key: &[u8], data: &str) -> String {
    BASE64.encode(mac_for(key, data).finalize().into_bytes())
}

fn mac_for(key: &[u8], data: &str) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data.as_bytes());
    mac
}

/// The `Signature` value for a string to sign. The key is the AccessKey secret followed by `&`;
/// forgetting the `&` is the classic cause of `SignatureDoesNotMatch`.
pub fn sign(access_key_secret: &str, string_to_sign: &str) -> String {
    hmac_sha1_base64(signing_key(access_key_secret).as_bytes(), string_to_sign)
}

fn signing_key(access_key_secret: &str) -> String {
    format!("{access_key_secret}&")
}

/// A request's parameters after signing: what goes on the wire and what was signed.
///
/// The string to sign is kept so a `SignatureDoesNotMatch` reply can be compared with it; it holds
/// the `SecurityToken` when there is one, so it must not be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedQuery {
    /// The full query string, `Signature` last and percent-encoded.
    pub query: String,
    /// The string that was signed for this request.
    pub string_to_sign: String,
}

impl std::fmt::Debug for SignedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignedQuery(***)")
    }
}

/// Signs the parameters for `method` and renders the query string sent on the wire.
pub fn signed_query<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    params: &[(K, V)],
    access_key_secret: &str,
) -> SignedQuery {
    // The canonical query is both what is signed and what is sent: build it once.
    let mut query = canonical_query(params);
    let string_to_sign = format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&query)
    );
    let signature = sign(access_key_secret, &string_to_sign);
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(SIGNATURE_PARAM);
    query.push('=');
    query.push_str(&percent_encode(&signature));
    SignedQuery {
        query,
        string_to_sign,
    }
}

/// The outcome of checking a received request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The signature matches the parameters and the secret.
    Valid,
    /// The request carries no `Signature` parameter.
    Missing,
    /// The signature does not match; the gateway reports this string back to the caller.
    Mismatch {
        /// What the server signed, as the real gateway quotes it in its error message.
        server_string_to_sign: String,
    },
}

/// Checks a request's `Signature` the way the gateway does: rebuild the string to sign from the
/// decoded parameters and the method actually used, then compare in constant time.
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    params: &[(K, V)],
    access_key_secret: &str,
) -> Verification {
    let Some(signature) = params
        .iter()
        .find(|(k, _)| k.as_ref() == SIGNATURE_PARAM)
        .map(|(_, v)| v.as_ref())
    else {
        return Verification::Missing;
    };
    let server_string_to_sign = string_to_sign(method, params);
    let mac = mac_for(
        signing_key(access_key_secret).as_bytes(),
        &server_string_to_sign,
    );
    let matches = BASE64
        .decode(signature)
        .is_ok_and(|raw| mac.verify_slice(&raw).is_ok());
    if matches {
        Verification::Valid
    } else {
        Verification::Mismatch {
            server_string_to_sign,
        }
    }
}

/// Names of the parameters that differ between two strings to sign, plus `method` when the
/// methods differ: a diagnosis that shows where canonicalisation went wrong without quoting any
/// value (values include the `SecurityToken`).
pub fn differing_params(ours: &str, theirs: &str) -> Vec<String> {
    fn split(sts: &str) -> (String, Vec<(String, String)>) {
        let mut parts = sts.splitn(3, '&');
        let method = parts.next().unwrap_or_default().to_string();
        let _path = parts.next();
        let canonical = percent_decode_strict(parts.next().unwrap_or_default());
        let pairs = canonical
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        (method, pairs)
    }
    let (our_method, our_pairs) = split(ours);
    let (their_method, their_pairs) = split(theirs);
    let mut names: Vec<String> = Vec::new();
    if our_method != their_method {
        names.push("method".to_string());
    }
    for (name, value) in our_pairs.iter().chain(their_pairs.iter()) {
        let in_ours = our_pairs.iter().any(|(k, v)| k == name && v == value);
        let in_theirs = their_pairs.iter().any(|(k, v)| k == name && v == value);
        if !(in_ours && in_theirs) {
            let name = percent_decode_strict(name);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Percent-decoding without the form rule for `+`: the string to sign never contains a literal
/// `+`, so treating it as a space would invent differences.
fn percent_decode_strict(value: &str) -> String {
    percent_decode(&value.replace('+', "%2B"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one vector: the canonical form, the string to sign and the signature must all match.
    fn check(method: &str, params: &[(&str, &str)], secret: &str, sts: &str, signature: &str) {
        assert_eq!(string_to_sign(method, params), sts);
        assert_eq!(sign(secret, sts), signature);
    }

    const V1_BASE: [(&str, &str); 8] = [
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("Format", "XML"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Version", "2014-05-26"),
    ];

    #[test]
    fn v1_published_describe_regions_example() {
        assert_eq!(
            canonical_query(&V1_BASE),
            "AccessKeyId=testid&Action=DescribeRegions&Format=XML&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26"
        );
        check(
            "GET",
            &V1_BASE,
            "testsecret",
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26",
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
        );
        assert_eq!(
            percent_encode("OLeaidS1JvxuMvnyHOwuJ+uX5qY="),
            "OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D"
        );
    }

    #[test]
    fn v1_input_order_does_not_matter() {
        let mut shuffled = V1_BASE;
        shuffled.reverse();
        assert_eq!(
            sign("testsecret", &string_to_sign("GET", &shuffled)),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn v2_timestamp_spelled_with_capital_s_is_the_other_classic_value() {
        let params: Vec<(&str, &str)> = V1_BASE
            .iter()
            .map(|&(k, v)| (if k == "Timestamp" { "TimeStamp" } else { k }, v))
            .collect();
        check(
            "GET",
            &params,
            "testsecret",
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26",
            "CT9X0VtwR86fNWSnsc6v8YGOjuE=",
        );
        // The trap in the ECS docs: the `Timestamp` string does not give the `TimeStamp` value.
        assert_ne!(
            sign("testsecret", &string_to_sign("GET", &V1_BASE)),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    #[test]
    fn v3_openapi_util_query_and_body_params() {
        check(
            "GET",
            &[("query", "test"), ("body", "test")],
            "secret",
            "GET&%2F&body%3Dtest%26query%3Dtest",
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU=",
        );
    }

    #[test]
    fn v4_empty_method() {
        check(
            "",
            &[("test", "ok")],
            "accessKeySecret",
            "&%2F&test%3Dok",
            "jHx/oHoHNrbVfhncHEvPdHXZwHU=",
        );
    }

    const V5_BASE: [(&str, &str); 10] = [
        ("AccessKeyId", "accessKeyId"),
        ("Action", ""),
        ("Format", "JSON"),
        ("RegionId", "regionId"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "MOCK_UUID"),
        ("SignatureType", ""),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "mock date"),
        ("Version", ""),
    ];

    #[test]
    fn v5_go_core_composer_with_empty_values_and_a_space() {
        check(
            "GET",
            &V5_BASE,
            "accessKeySecret",
            "GET&%2F&AccessKeyId%3DaccessKeyId%26Action%3D%26Format%3DJSON%26RegionId%3DregionId%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3DMOCK_UUID%26SignatureType%3D%26SignatureVersion%3D1.0%26Timestamp%3Dmock%2520date%26Version%3D",
            "7loPmFjvDnzOVnQeQNj85S6nFGY=",
        );
    }

    #[test]
    fn v5_go_core_composer_with_sts_token() {
        let mut params = V5_BASE.to_vec();
        params.push(("SecurityToken", "accessKeyStsToken"));
        assert_eq!(
            sign("accessKeySecret", &string_to_sign("GET", &params)),
            "5Nxdcler+ihqWqv0Hr2On4PsBf4="
        );
    }

    #[test]
    fn v6_go_core_string_to_sign() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(string_to_sign("GET", &none), "GET&%2F&");
        assert_eq!(
            string_to_sign("GET", &[("key", "value")]),
            "GET&%2F&key%3Dvalue"
        );
        assert_eq!(
            string_to_sign("GET", &[("key", "value"), ("q", "value")]),
            "GET&%2F&key%3Dvalue%26q%3Dvalue"
        );
        assert_eq!(
            string_to_sign(
                "GET",
                &[("key", "value"), ("q", "http://domain/?q=value&q2=value2")]
            ),
            "GET&%2F&key%3Dvalue%26q%3Dhttp%253A%252F%252Fdomain%252F%253Fq%253Dvalue%2526q2%253Dvalue2"
        );
    }

    #[test]
    fn v7_java_core_string_to_sign() {
        assert_eq!(
            string_to_sign(
                "GET",
                &[("queryKey1", "queryValue1"), ("queryKey2", "queryValue2")]
            ),
            "GET&%2F&queryKey1%3DqueryValue1%26queryKey2%3DqueryValue2"
        );
    }

    #[test]
    fn v8_java_core_percent_encoding() {
        assert_eq!(
            percent_encode("123abc!@#$%^&*()-=_+ ~|\\/"),
            "123abc%21%40%23%24%25%5E%26%2A%28%29-%3D_%2B%20~%7C%5C%2F"
        );
        assert_eq!(percent_encode("中文"), "%E4%B8%AD%E6%96%87");
        assert_eq!(percent_encode("a\"b:c"), "a%22b%3Ac");
    }

    #[test]
    fn v9_raw_hmac_sha1() {
        assert_eq!(
            hmac_sha1_base64(b"secret", "source"),
            "Jv4yi8SobFhg5t1C7nWLbhBSFZQ="
        );
        assert_eq!(
            hmac_sha1_base64(b"secret", "中文unicode"),
            "szlfHs3WVaO/HgY3Cg7/uyXDaRw="
        );
        assert_eq!(
            hmac_sha1_base64(b"sk#$!~~~", "abc~!@#"),
            "7eV3A584uvdgKVk8Ck8r9ukg1gE="
        );
    }

    const V10_BASE: [(&str, &str); 9] = [
        ("AccessKeyId", "testid"),
        ("Action", "DescribePreCheckProgressList"),
        ("BackupPlanId", "dbstooi01XXXX"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Version", "2019-03-06"),
    ];

    const V10_GET_STS: &str = "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribePreCheckProgressList%26BackupPlanId%3Ddbstooi01XXXX%26Format%3DJSON%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2019-03-06";

    #[test]
    fn v10_dbs_get() {
        check(
            "GET",
            &V10_BASE,
            "testsecret",
            V10_GET_STS,
            "7KonYPI2BRfLe0uN8qFWOcAAR7Y=",
        );
    }

    #[test]
    fn v10_dbs_post() {
        let post_sts = format!("POST{}", V10_GET_STS.strip_prefix("GET").unwrap());
        check(
            "POST",
            &V10_BASE,
            "testsecret",
            &post_sts,
            "M8GC72Wx2FMkqsKZDQ8bedrT+04=",
        );
        let signed = signed_query("POST", &V10_BASE, "testsecret");
        assert!(
            signed
                .query
                .ends_with("&Signature=M8GC72Wx2FMkqsKZDQ8bedrT%2B04%3D"),
            "{}",
            signed.query
        );
    }

    #[test]
    fn v10_dbs_get_with_security_token() {
        let mut params = V10_BASE.to_vec();
        params.push(("SecurityToken", "CAIS/sts+token=="));
        assert!(canonical_query(&params).contains("&SecurityToken=CAIS%2Fsts%2Btoken%3D%3D&"));
        assert_eq!(
            sign("testsecret", &string_to_sign("GET", &params)),
            "kxflkAFZo/vSHQeUrQM5HJkDrP4="
        );
    }

    #[test]
    fn v10_dbs_unicode_space_star_and_tilde() {
        let params: Vec<(&str, &str)> = V10_BASE
            .iter()
            .filter(|(k, _)| *k != "BackupPlanId")
            .map(|&(k, v)| {
                (
                    k,
                    if k == "Action" {
                        "DescribeBackupPlanList"
                    } else {
                        v
                    },
                )
            })
            .chain([("BackupPlanName", "测试 plan*~")])
            .collect();
        assert!(canonical_query(&params).contains("BackupPlanName=%E6%B5%8B%E8%AF%95%20plan%2A~&"));
        let sts = string_to_sign("GET", &params);
        assert!(sts.contains("%25E6%25B5%258B%25E8%25AF%2595%2520plan%252A~"));
        assert_eq!(sign("testsecret", &sts), "bKvejXL6SW7CZRoaHT3MXQ6Eor8=");
    }

    #[test]
    fn signature_param_is_never_signed() {
        let mut params = V10_BASE.to_vec();
        params.push(("Signature", "anything"));
        assert_eq!(string_to_sign("GET", &params), V10_GET_STS);
    }

    #[test]
    fn decode_inverts_encode_and_handles_form_rules() {
        for s in ["测试 plan*~", "CAIS/sts+token==", "a&b=c%d", ""] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn parse_query_round_trips_a_signed_query() {
        let signed = signed_query("POST", &V10_BASE, "testsecret");
        let parsed = parse_query(&signed.query);
        assert_eq!(parsed.len(), V10_BASE.len() + 1);
        assert!(parsed.contains(&("Timestamp".into(), "2016-02-23T12:46:24Z".into())));
        assert!(parsed.contains(&("Signature".into(), "M8GC72Wx2FMkqsKZDQ8bedrT+04=".into())));
        assert_eq!(
            parse_query("flag&x=1"),
            vec![
                ("flag".to_string(), String::new()),
                ("x".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn verify_accepts_the_right_secret_and_method_only() {
        let signed = signed_query("POST", &V10_BASE, "testsecret");
        let params = parse_query(&signed.query);
        assert_eq!(verify("POST", &params, "testsecret"), Verification::Valid);
        assert_eq!(
            verify("POST", &params, "wrongsecret"),
            Verification::Mismatch {
                server_string_to_sign: signed.string_to_sign.clone()
            }
        );
        assert!(matches!(
            verify("GET", &params, "testsecret"),
            Verification::Mismatch { .. }
        ));
        assert_eq!(
            verify("POST", &V10_BASE, "testsecret"),
            Verification::Missing
        );
        let mut garbage = params.clone();
        garbage.retain(|(k, _)| k != "Signature");
        garbage.push(("Signature".into(), "not base64!".into()));
        assert!(matches!(
            verify("POST", &garbage, "testsecret"),
            Verification::Mismatch { .. }
        ));
    }

    #[test]
    fn differing_params_names_what_changed_without_values() {
        let ours = string_to_sign("POST", &V10_BASE);
        let mut changed = V10_BASE.to_vec();
        changed[5] = ("SignatureNonce", "other-nonce");
        changed.push(("SecurityToken", "CAIS/secret+token"));
        let theirs = string_to_sign("GET", &changed);
        let diff = differing_params(&ours, &theirs);
        assert_eq!(diff, vec!["method", "SignatureNonce", "SecurityToken"]);
        assert!(differing_params(&ours, &ours).is_empty());
    }

    #[test]
    fn signed_query_debug_hides_the_token() {
        let signed = signed_query("POST", &[("SecurityToken", "tok-123")], "s");
        assert_eq!(format!("{signed:?}"), "SignedQuery(***)");
    }
}
