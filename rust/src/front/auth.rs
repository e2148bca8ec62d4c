//! Bearer tokens and tenants, as the Python app checks them
//! (`gateway/auth.py`). The front only needs the accepting answers: a
//! request it cannot accept here goes to the Python app, which gives the
//! refusal (and its audit record).

use sha2::{Digest, Sha256};

/// One configured token.
pub struct TokenEntry {
    digest: [u8; 32],
    /// The keyed hash that names the token in audit records and buckets.
    pub token_id: String,
    /// `None`: every tenant.
    pub tenants: Option<Vec<u64>>,
}

impl TokenEntry {
    pub fn new(secret: &str, token_id: String, tenants: Option<Vec<u64>>) -> Self {
        let mut tenants = tenants;
        if let Some(t) = tenants.as_mut() {
            t.sort_unstable();
            t.dedup();
        }
        TokenEntry {
            digest: Sha256::digest(secret.as_bytes()).into(),
            token_id,
            tenants,
        }
    }
}

/// Who is calling.
#[derive(Clone, Copy)]
pub enum Principal<'a> {
    /// No tokens configured: everything is allowed.
    Dev,
    Bearer(&'a TokenEntry),
}

impl Principal<'_> {
    pub fn allows(&self, tenant: u64) -> bool {
        match self {
            Principal::Dev => true,
            Principal::Bearer(e) => e
                .tenants
                .as_ref()
                .is_none_or(|t| t.binary_search(&tenant).is_ok()),
        }
    }

    /// The rate-limit bucket key (the Python app's `token_id or kind`).
    pub fn bucket_key(&self) -> &str {
        match self {
            Principal::Dev => "dev",
            Principal::Bearer(e) => &e.token_id,
        }
    }

    /// The audit record's `actor` object.
    pub fn audit_actor(&self) -> serde_json::Value {
        match self {
            Principal::Dev => serde_json::json!({"kind": "dev", "token_id": null, "scope": "*"}),
            Principal::Bearer(e) => serde_json::json!({
                "kind": "bearer",
                "token_id": e.token_id,
                "scope": match &e.tenants {
                    None => serde_json::json!("*"),
                    Some(t) => serde_json::json!(t),
                },
            }),
        }
    }
}

pub struct Auth {
    dev: bool,
    entries: Vec<TokenEntry>,
}

impl Auth {
    pub fn new(dev: bool, entries: Vec<TokenEntry>) -> Self {
        Auth { dev, entries }
    }

    /// The caller of a request with this `Authorization` value, or `None`
    /// when it does not authenticate. Every configured token is compared,
    /// in constant time, whatever matches.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Option<Principal<'_>> {
        if self.dev {
            return Some(Principal::Dev);
        }
        let token = bearer(authorization?)?;
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.digest, &digest) && found.is_none() {
                found = Some(entry);
            }
        }
        found.map(Principal::Bearer)
    }
}

/// The token of `Bearer <token>` (scheme in any case, spaces trimmed).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    // Tokens are ASCII (the config refuses anything else).
    (!token.is_empty() && token.is_ascii()).then_some(token)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for i in 0..32 {
        diff |= a[i] ^ b[i];
    }
    // Keep the comparison from being short-circuited.
    std::hint::black_box(diff) == 0
}

/// `X-TensorWasm-Tenant`, read as the app reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum TenantHeader {
    Absent,
    Tenant(u64),
    /// Not an unsigned 64-bit integer (the app answers `invalid_tenant`).
    Invalid,
}

pub fn parse_tenant(raw: Option<&[u8]>) -> TenantHeader {
    let Some(raw) = raw else {
        return TenantHeader::Absent;
    };
    let digits = raw.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return TenantHeader::Invalid;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(TenantHeader::Invalid, TenantHeader::Tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            false,
            vec![
                TokenEntry::new("alpha", "id-a".into(), None),
                TokenEntry::new("beta", "id-b".into(), Some(vec![3, 1])),
            ],
        )
    }

    #[test]
    fn bearer_tokens_and_scopes() {
        let a = auth();
        let p = a.authenticate(Some(b"Bearer alpha")).unwrap();
        assert!(p.allows(99));
        assert_eq!(p.bucket_key(), "id-a");
        let p = a.authenticate(Some(b"bearer  beta ")).unwrap();
        assert!(p.allows(1) && p.allows(3) && !p.allows(2));
        assert_eq!(p.audit_actor()["scope"], serde_json::json!([1, 3]));
        assert!(a.authenticate(Some(b"Bearer gamma")).is_none());
        assert!(a.authenticate(Some(b"Basic alpha")).is_none());
        assert!(a.authenticate(Some(b"Bearer ")).is_none());
        assert!(a.authenticate(None).is_none());
    }

    #[test]
    fn dev_mode_allows_everything() {
        let a = Auth::new(true, Vec::new());
        assert!(matches!(a.authenticate(None), Some(Principal::Dev)));
    }

    #[test]
    fn tenants() {
        use TenantHeader::*;
        assert_eq!(parse_tenant(None), Absent);
        assert_eq!(parse_tenant(Some(b" 42 ")), Tenant(42));
        assert_eq!(
            parse_tenant(Some(b"18446744073709551615")),
            Tenant(u64::MAX)
        );
        assert_eq!(parse_tenant(Some(b"18446744073709551616")), Invalid);
        assert_eq!(parse_tenant(Some(b"-1")), Invalid);
        assert_eq!(parse_tenant(Some(b"")), Invalid);
    }
}
