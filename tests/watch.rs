//! `--watch`: tern reloads by itself when a certificate file changes, however it is replaced —
//! renamed over, a certbot-style symlink swap, a Kubernetes-style `..data` swap — once per
//! change; a broken file keeps the old certificate and says why.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::pki::{s_client, subject_cn, Ca, EC};
use common::*;

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn start(pem: &Path) -> Tern {
    let backend = echo_backend().to_string();
    Tern::start(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--workers",
        "1",
        "--watch",
        "--pem",
        &p(pem),
    ])
}

/// The common name of the certificate a new connection is shown.
fn cn(tern: &Tern) -> Option<String> {
    subject_cn(&s_client(tern.addr(), &["-servername", "site.test"]))
}

fn count(tern: &Tern, needle: &str) -> usize {
    tern.log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits for the `n`th successful reload and checks it was the `attempts`th attempt: one per
/// change.
fn reloaded_after(tern: &Tern, n: usize, attempts: usize) {
    assert!(
        tern.wait_for_count("reloaded in", n, WAIT),
        "no reload {n}: {}",
        tern.log_text()
    );
    assert_eq!(
        count(tern, "reloading certificates"),
        attempts,
        "{}",
        tern.log_text()
    );
}

fn reloaded(tern: &Tern, n: usize) {
    reloaded_after(tern, n, n)
}

/// Copies `from` to a temporary name beside `to`, then renames it over `to`.
fn rename_over(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Points the symlink `link` at `target` in one step: a new link under a temporary name,
/// renamed over the old one (as certbot and Kubernetes do).
fn swap_link(target: &str, link: &Path) {
    let tmp = link.with_file_name(format!(
        "{}_tmp",
        link.file_name().unwrap().to_str().unwrap()
    ));
    symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[test]
fn a_file_renamed_over_the_pem_is_served() {
    let ca = Ca::new();
    let keys = tempfile::tempdir().unwrap();
    let old = ca.leaf(keys.path(), "old", &["site.test"], EC);
    let new = ca.leaf(keys.path(), "new", &["site.test"], EC);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.pem");
    std::fs::copy(&old.pem, &live).unwrap();
    let tern = start(&live);
    assert_eq!(cn(&tern).as_deref(), Some("old"));
    // Not a file of the generation: no reload.
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();

    rename_over(&new.pem, &live);
    reloaded(&tern, 1);
    assert!(tern.log_text().contains("files changed"));
    assert_eq!(cn(&tern).as_deref(), Some("new"));
    rename_over(&old.pem, &live);
    reloaded(&tern, 2);
    assert_eq!(cn(&tern).as_deref(), Some("old"));
}

#[test]
fn a_certbot_style_symlink_swap_is_served() {
    let ca = Ca::new();
    let root = tempfile::tempdir().unwrap();
    let (archive, live) = (root.path().join("archive"), root.path().join("live"));
    std::fs::create_dir(&archive).unwrap();
    std::fs::create_dir(&live).unwrap();
    let first = ca.leaf(&archive, "site1", &["site.test"], EC);
    let link = live.join("site.pem");
    symlink("../archive/site1.pem", &link).unwrap();
    let tern = start(&link);
    assert_eq!(cn(&tern).as_deref(), Some("site1"));

    // Renewal: a new file in archive/, then the link in live/ swapped to it.
    ca.leaf(&archive, "site2", &["site.test"], EC);
    swap_link("../archive/site2.pem", &link);
    reloaded(&tern, 1);
    assert_eq!(cn(&tern).as_deref(), Some("site2"));

    // A rewrite of the target in place, behind the link, is seen too.
    let third = ca.leaf(root.path(), "site3", &["site.test"], EC);
    std::fs::write(
        archive.join("site2.pem"),
        std::fs::read(&third.pem).unwrap(),
    )
    .unwrap();
    reloaded(&tern, 2);
    assert_eq!(cn(&tern).as_deref(), Some("site3"));
    drop(first);
}

#[test]
fn a_kubernetes_style_data_swap_is_served() {
    let ca = Ca::new();
    let mount = tempfile::tempdir().unwrap();
    let m = mount.path();
    // What the kubelet makes of a Secret volume.
    std::fs::create_dir(m.join("..2026_a")).unwrap();
    let a = ca.leaf(&m.join("..2026_a"), "site", &["site.test"], EC);
    std::fs::rename(&a.pem, m.join("..2026_a/site.pem")).unwrap();
    symlink("..2026_a", m.join("..data")).unwrap();
    symlink("..data/site.pem", m.join("site.pem")).unwrap();
    let tern = start(&m.join("site.pem"));
    assert_eq!(cn(&tern).as_deref(), Some("site"));

    // An update: a new timestamped directory, then ..data renamed over to point at it.
    std::fs::create_dir(m.join("..2026_b")).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let b = ca.leaf(keys.path(), "site-b", &["site.test"], EC);
    std::fs::copy(&b.pem, m.join("..2026_b/site.pem")).unwrap();
    swap_link("..2026_b", &m.join("..data"));
    reloaded(&tern, 1);
    assert_eq!(cn(&tern).as_deref(), Some("site-b"));
}

#[test]
fn a_broken_file_keeps_the_old_certificate_and_says_why() {
    let ca = Ca::new();
    let keys = tempfile::tempdir().unwrap();
    let old = ca.leaf(keys.path(), "old", &["site.test"], EC);
    let new = ca.leaf(keys.path(), "new", &["site.test"], EC);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.pem");
    std::fs::copy(&old.pem, &live).unwrap();
    let mut tern = start(&live);

    std::fs::write(&live, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    assert!(tern.wait_log("reload failed", WAIT), "{}", tern.log_text());
    let line = tern
        .log_text()
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap()
        .to_string();
    assert!(line.contains("live.pem"), "names the file: {line}");
    assert!(tern.is_running());
    assert_eq!(cn(&tern).as_deref(), Some("old"));
    assert_eq!(count(&tern, "reloading certificates"), 1);

    // Fixed, it is picked up again.
    rename_over(&new.pem, &live);
    reloaded_after(&tern, 1, 2);
    assert_eq!(cn(&tern).as_deref(), Some("new"));
    assert_eq!(count(&tern, "reload failed"), 1);
}

#[test]
fn a_new_cert_and_key_written_one_after_the_other_are_served() {
    let ca = Ca::new();
    let keys = tempfile::tempdir().unwrap();
    let old = ca.leaf(keys.path(), "old", &["site.test"], EC);
    let new = ca.leaf(keys.path(), "new", &["site.test"], EC);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    std::fs::copy(&old.cert, &cert).unwrap();
    std::fs::copy(&old.key, &key).unwrap();
    let backend = echo_backend().to_string();
    let tern = Tern::start(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--workers",
        "1",
        "--watch",
        "--cert",
        &p(&cert),
        "--key",
        &p(&key),
    ]);
    rename_over(&new.cert, &cert);
    rename_over(&new.key, &key);
    // The two renames come well inside the quiet time, so this is normally one reload; were
    // they split, the first would fail (mismatched pair) and the second put the pair in.
    assert!(tern.wait_log("reloaded in", WAIT), "{}", tern.log_text());
    assert_eq!(cn(&tern).as_deref(), Some("new"));
}

#[test]
fn an_edited_config_file_is_served() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    ca.leaf(dir.path(), "one", &["site.test"], EC);
    ca.leaf(dir.path(), "two", &["site.test"], EC);
    let backend = echo_backend();
    let config = |pem: &str| {
        format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\npem = \"{pem}\"\n[[pool]]\nname = \"p\"\nbackends = [\"{backend}\"]\n"
        )
    };
    let file = dir.path().join("tern.toml");
    std::fs::write(&file, config("one.pem")).unwrap();
    let tern = Tern::start(&["--config", &p(&file), "--workers", "1", "--watch"]);
    assert_eq!(cn(&tern).as_deref(), Some("one"));
    // Written in place, as an editor without a backup file does.
    std::fs::write(&file, config("two.pem")).unwrap();
    reloaded(&tern, 1);
    assert_eq!(cn(&tern).as_deref(), Some("two"));
}
