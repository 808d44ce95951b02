//! Fuzz body: arbitrary text into the `otpauth://` URI parser.
//!
//! Nothing may panic. Whatever parses must print to a URI that parses back to the same key, type
//! and names (round trip), and printing must be stable (print, parse, print gives the same text).

use custodian::mfa::OtpauthUri;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = OtpauthUri::parse(text);
    let legacy = OtpauthUri::parse_legacy(text);
    if let Ok(uri) = &strict {
        // The legacy parser accepts a superset: the same URI with the same meaning.
        assert_eq!(legacy.as_ref().ok(), Some(uri), "legacy parser disagrees");
    }
    let Ok(uri) = legacy else {
        return;
    };
    let printed = uri.to_uri();
    let reparsed = OtpauthUri::parse_legacy(printed.expose_secret()).unwrap();
    assert_eq!(reparsed, uri, "round trip changed the URI");
    assert_eq!(reparsed.to_uri(), printed, "printing is not stable");
    assert_eq!(strict.is_ok(), uri.secret().len() >= 16, "strict parser and secret length disagree");
}
