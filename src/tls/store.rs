//! Certificates by server name (SNI), as hitch and HAProxy choose them: each certificate serves
//! the DNS names in its subjectAltName (or the names the config gives it), `*.example.com`
//! covering one label; an exact name beats a wildcard. A name may have one certificate per key
//! type (an ECDSA and an RSA one, say): the client's signature schemes choose, ECDSA first, so
//! RSA-only clients still get through while everyone else gets the cheaper handshake.
//!
//! Immutable once built and shared by every worker; a lookup is one or two hash probes.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::{SignatureAlgorithm, SignatureScheme};

use super::client_auth::ClientAuth;

use crate::route::HostMatch;

/// One certificate as loaded, with the names it serves and where it came from (for messages).
#[derive(Debug)]
pub struct CertEntry {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<HostMatch>,
    /// How the user knows it: `--pem site.pem`, `tern.toml:12: a.pem`.
    pub source: String,
    /// The client certificates a handshake presenting this certificate asks for (mTLS);
    /// `None`: none.
    pub client_auth: Option<Arc<ClientAuth>>,
}

/// The key types tern tells apart, in order of preference when a name has several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ecdsa = 0,
    Ed25519 = 1,
    Rsa = 2,
}

const KINDS: usize = 3;

impl KeyKind {
    pub fn of(key: &CertifiedKey) -> Option<KeyKind> {
        match key.key.algorithm() {
            SignatureAlgorithm::ECDSA => Some(KeyKind::Ecdsa),
            SignatureAlgorithm::ED25519 => Some(KeyKind::Ed25519),
            SignatureAlgorithm::RSA => Some(KeyKind::Rsa),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Ecdsa => "ECDSA",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Rsa => "RSA",
        }
    }
}

/// The certificates that may answer for one name: at most one per key type.
type Slots = [Option<u32>; KINDS];

/// A set of certificates answering for the same names (an index into the store's groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(u32);

#[derive(Debug)]
pub struct CertStore {
    entries: Vec<CertEntry>,
    groups: Vec<Slots>,
    exact: HashMap<String, Group>,
    /// `.example.com` → the group for `*.example.com`.
    wildcard: HashMap<String, Group>,
    /// For clients that send no name, or (unless strict) one no certificate covers.
    default: Group,
    /// The distinct client-auth settings of the entries; a group's setting is
    /// `auths[group_auth[g] - 1]`, or none when that is 0.
    auths: Vec<Arc<ClientAuth>>,
    group_auth: Vec<u16>,
}

impl CertStore {
    /// The first entry is the default. Two certificates of the same key type claiming the same
    /// name are refused, naming both.
    pub fn new(entries: Vec<CertEntry>) -> Result<CertStore, String> {
        if entries.is_empty() {
            return Err("no certificate given".into());
        }
        let mut exact: HashMap<String, Slots> = HashMap::new();
        let mut wildcard: HashMap<String, Slots> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let kind =
                KeyKind::of(&e.key).ok_or_else(|| format!("{}: unsupported key type", e.source))?;
            for name in &e.names {
                let (map, shown) = match name {
                    HostMatch::Exact(n) => (&mut exact, n.clone()),
                    HostMatch::Wildcard(suffix) => (&mut wildcard, format!("*{suffix}")),
                    HostMatch::Any => continue,
                };
                let key = match name {
                    HostMatch::Exact(n) | HostMatch::Wildcard(n) => n.clone(),
                    HostMatch::Any => unreachable!("skipped above"),
                };
                let slots = map.entry(key).or_default();
                match slots[kind as usize] {
                    // The same certificate naming a host twice is harmless.
                    Some(j) if j as usize != i => {
                        return Err(format!(
                            "{} and {} both have an {} certificate for {shown}",
                            entries[j as usize].source,
                            e.source,
                            kind.name()
                        ))
                    }
                    _ => slots[kind as usize] = Some(i as u32),
                }
            }
        }
        // The default is the first certificate together with its other-key-type twins: the
        // certificates of its first name, when those include it.
        let first_name = entries[0].names.iter().find_map(|n| match n {
            HostMatch::Exact(n) => exact.get(n),
            HostMatch::Wildcard(s) => wildcard.get(s),
            HostMatch::Any => None,
        });
        let default_slots = match first_name {
            Some(slots) if slots.contains(&Some(0)) => *slots,
            _ => {
                let mut slots: Slots = [None; KINDS];
                // Invariant: the loop above checked every entry's key type.
                let kind = KeyKind::of(&entries[0].key).expect("checked key type");
                slots[kind as usize] = Some(0);
                slots
            }
        };
        let mut groups: Vec<Slots> = Vec::new();
        let mut ids: HashMap<Slots, Group> = HashMap::new();
        let mut intern = |slots: Slots| {
            *ids.entry(slots).or_insert_with(|| {
                groups.push(slots);
                Group(groups.len() as u32 - 1)
            })
        };
        let default = intern(default_slots);
        let exact: HashMap<String, Group> =
            exact.into_iter().map(|(k, s)| (k, intern(s))).collect();
        let wildcard: HashMap<String, Group> =
            wildcard.into_iter().map(|(k, s)| (k, intern(s))).collect();
        let (auths, group_auth) = client_auth_of_groups(&entries, &groups)?;
        Ok(CertStore {
            entries,
            groups,
            exact,
            wildcard,
            default,
            auths,
            group_auth,
        })
    }

    /// One certificate for every name.
    pub fn single(key: Arc<CertifiedKey>) -> CertStore {
        let entry = CertEntry {
            key,
            names: Vec::new(),
            source: "certificate".into(),
            client_auth: None,
        };
        // Invariant: one entry with no names cannot collide; only an unsupported key fails,
        // and callers made the key with a supported algorithm.
        CertStore::new(vec![entry]).expect("a single certificate")
    }

    /// The group for a (lower-case) server name; `None` when a name was given and no
    /// certificate covers it.
    pub fn lookup(&self, name: Option<&str>) -> Option<Group> {
        let Some(name) = name else {
            return Some(self.default);
        };
        if let Some(&g) = self.exact.get(name) {
            return Some(g);
        }
        name.find('.')
            .and_then(|dot| self.wildcard.get(&name[dot..]))
            .copied()
    }

    /// The group for a name, the default when none covers it.
    pub fn group_for(&self, name: Option<&str>) -> Group {
        self.lookup(name).unwrap_or(self.default)
    }

    /// The certificate of `group` to present to a client offering `schemes`: the first (by
    /// key type preference) whose key can sign with one of them, else the first there is (the
    /// handshake then fails on the client's terms).
    pub fn pick(&self, group: Group, schemes: &[SignatureScheme]) -> &Arc<CertifiedKey> {
        let slots = &self.groups[group.0 as usize];
        let mut present = slots
            .iter()
            .flatten()
            .map(|&i| &self.entries[i as usize].key);
        // Invariant: every group holds at least one certificate (built from one above).
        let first = present.next().expect("non-empty group");
        if slots.iter().flatten().count() == 1 {
            return first;
        }
        std::iter::once(first)
            .chain(present)
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .unwrap_or(first)
    }

    /// The index of the certificate a name gets when the client accepts every key type
    /// (`None` when no certificate covers the name).
    pub fn preferred(&self, name: Option<&str>) -> Option<usize> {
        let g = self.lookup(name)?;
        self.groups[g.0 as usize]
            .iter()
            .flatten()
            .next()
            .map(|&i| i as usize)
    }

    /// Whether two groups have a certificate in common: a request for a host of one may use a
    /// connection set up for a host of the other.
    pub fn shares(&self, a: Group, b: Group) -> bool {
        a == b || {
            let (a, b) = (&self.groups[a.0 as usize], &self.groups[b.0 as usize]);
            a.iter().flatten().any(|i| b.contains(&Some(*i)))
        }
    }

    pub fn entries(&self) -> &[CertEntry] {
        &self.entries
    }

    /// The client-auth setting a handshake for `group` uses, as an index: 0 for none, `i` for
    /// `client_auths()[i - 1]`. Every certificate of a group has the same one (checked when
    /// the store is built), so the choice of certificate never changes it.
    pub fn client_auth_index(&self, group: Group) -> usize {
        self.group_auth[group.0 as usize] as usize
    }

    /// Whether some group uses client-auth index `i` (0: none).
    pub fn client_auth_in_use(&self, i: usize) -> bool {
        self.group_auth.iter().any(|&a| a as usize == i)
    }

    /// The distinct client-auth settings in use.
    pub fn client_auths(&self) -> &[Arc<ClientAuth>] {
        &self.auths
    }

    /// The one client-auth index every group uses, when there is one: then a single server
    /// config serves every handshake.
    pub fn uniform_client_auth(&self) -> Option<usize> {
        let first = *self.group_auth.first()?;
        self.group_auth
            .iter()
            .all(|&a| a == first)
            .then_some(first as usize)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The distinct client-auth settings, and each group's. Certificates that answer for the same
/// names must agree: which of them a client gets depends on its signature schemes, and that
/// must not decide whether it has to show a certificate.
fn client_auth_of_groups(
    entries: &[CertEntry],
    groups: &[Slots],
) -> Result<(Vec<Arc<ClientAuth>>, Vec<u16>), String> {
    let mut auths: Vec<Arc<ClientAuth>> = Vec::new();
    let mut index_of = |a: &Option<Arc<ClientAuth>>| -> Result<u16, String> {
        let Some(a) = a else { return Ok(0) };
        let i = match auths.iter().position(|b| **b == **a) {
            Some(i) => i,
            None => {
                auths.push(a.clone());
                auths.len() - 1
            }
        };
        u16::try_from(i + 1).map_err(|_| "more than 65535 different client CA settings".into())
    };
    let mut group_auth = Vec::with_capacity(groups.len());
    for slots in groups {
        let mut members = slots.iter().flatten().map(|&i| &entries[i as usize]);
        // Invariant: every group holds at least one certificate.
        let first = members.next().expect("non-empty group");
        let index = index_of(&first.client_auth)?;
        for other in members {
            if index_of(&other.client_auth)? != index {
                return Err(format!(
                    "{} and {} answer for the same names with different client certificate \
                     settings (client CA, CRL, required/optional)",
                    first.source, other.source
                ));
            }
        }
        group_auth.push(index);
    }
    Ok((auths, group_auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> rustls::crypto::CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn key_for(alg: &'static rcgen::SignatureAlgorithm, names: &[&str]) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        super::super::certs::from_der(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            &provider(),
        )
        .unwrap()
    }

    fn entry(alg: &'static rcgen::SignatureAlgorithm, names: &[&str], src: &str) -> CertEntry {
        let key = key_for(alg, names);
        CertEntry {
            names: super::super::certs::names(&key),
            key,
            source: src.into(),
            client_auth: None,
        }
    }

    const EC: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;
    const RSA: &rcgen::SignatureAlgorithm = &rcgen::PKCS_RSA_SHA256;

    fn index_of(store: &CertStore, k: &Arc<CertifiedKey>) -> usize {
        store
            .entries()
            .iter()
            .position(|e| Arc::ptr_eq(&e.key, k))
            .unwrap()
    }

    const ALL: &[SignatureScheme] = &[
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];
    const RSA_ONLY: &[SignatureScheme] = &[SignatureScheme::RSA_PKCS1_SHA256];

    #[test]
    fn names_exact_wildcard_default_and_unknown() {
        let store = CertStore::new(vec![
            entry(EC, &["a.example", "www.a.example"], "a"),
            entry(EC, &["*.b.example", "b.example"], "b"),
        ])
        .unwrap();
        let at = |n: Option<&str>| {
            store
                .lookup(n)
                .map(|g| index_of(&store, store.pick(g, ALL)))
        };
        assert_eq!(at(Some("a.example")), Some(0));
        assert_eq!(at(Some("www.a.example")), Some(0));
        assert_eq!(at(Some("b.example")), Some(1));
        assert_eq!(at(Some("shop.b.example")), Some(1));
        assert_eq!(at(Some("deep.shop.b.example")), None, "one label only");
        assert_eq!(at(Some("unknown.org")), None);
        assert_eq!(at(None), Some(0), "no name: the first is the default");
        let unknown = store.group_for(Some("unknown.org"));
        assert_eq!(index_of(&store, store.pick(unknown, ALL)), 0);
    }

    #[test]
    fn an_exact_name_beats_a_wildcard() {
        let store = CertStore::new(vec![
            entry(EC, &["*.example.com"], "wild"),
            entry(EC, &["www.example.com"], "www"),
        ])
        .unwrap();
        let g = store.lookup(Some("www.example.com")).unwrap();
        assert_eq!(index_of(&store, store.pick(g, ALL)), 1);
        let g = store.lookup(Some("api.example.com")).unwrap();
        assert_eq!(index_of(&store, store.pick(g, ALL)), 0);
    }

    #[test]
    fn ecdsa_and_rsa_twins_are_chosen_by_the_clients_schemes() {
        let store = CertStore::new(vec![
            entry(RSA, &["site.example"], "rsa.pem"),
            entry(EC, &["site.example"], "ec.pem"),
        ])
        .unwrap();
        for name in [Some("site.example"), None] {
            let g = store.group_for(name);
            assert_eq!(index_of(&store, store.pick(g, ALL)), 1, "ECDSA first");
            assert_eq!(
                index_of(&store, store.pick(g, RSA_ONLY)),
                0,
                "RSA-only client"
            );
        }
    }

    #[test]
    fn the_same_name_twice_with_one_key_type_is_refused_naming_both() {
        let e = CertStore::new(vec![
            entry(EC, &["x.example", "y.example"], "--pem one.pem"),
            entry(EC, &["y.example"], "--pem two.pem"),
        ])
        .unwrap_err();
        assert!(
            e.contains("--pem one.pem") && e.contains("--pem two.pem") && e.contains("y.example"),
            "{e}"
        );
        let e = CertStore::new(vec![
            entry(EC, &["*.w.example"], "a"),
            entry(EC, &["*.w.example"], "b"),
        ])
        .unwrap_err();
        assert!(e.contains("*.w.example"), "{e}");
    }

    #[test]
    fn hosts_sharing_a_certificate_may_share_a_connection() {
        let store = CertStore::new(vec![
            entry(EC, &["a.example", "b.example"], "ab"),
            entry(RSA, &["a.example"], "a-rsa"),
            entry(EC, &["c.example"], "c"),
        ])
        .unwrap();
        let g = |n| store.group_for(Some(n));
        assert!(store.shares(g("a.example"), g("b.example")));
        assert!(!store.shares(g("a.example"), g("c.example")));
        assert!(
            store.shares(g("nowhere.example"), g("a.example")),
            "default"
        );
    }
}
