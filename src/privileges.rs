//! Dropping root: a terminator holds every client's plaintext and its own private keys, so
//! once the listeners are bound (ports below 1024 need root) and the keys are loaded, it
//! should run as an unprivileged user. `--user NAME` does that before any worker starts.

use std::ffi::CString;
use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Looks a user up by name (the password database: /etc/passwd, NSS).
pub fn lookup(name: &str) -> Result<User, String> {
    let cname = CString::new(name).map_err(|_| format!("--user {name:?}: not a user name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data filled by getpwnam_r, whose strings point into `buf`,
    // which outlives every use below.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 {
            return Err(format!(
                "--user {name}: {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        if result.is_null() {
            return Err(format!("--user {name}: no such user"));
        }
        Ok(User {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// Becomes `user` for good: no supplementary groups, its group, its user, and no way back
/// (no new privileges through exec). Call before starting threads that should run as it.
pub fn drop_to(user: &User) -> io::Result<()> {
    // SAFETY: plain credential syscalls on this process; each result is checked.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(user.gid) != 0
            || libc::setuid(user.uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getuid() != user.uid || libc::geteuid() != user.uid || libc::setuid(0) == 0 {
            return Err(io::Error::other("privileges were not fully dropped"));
        }
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_users_up() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(lookup("no-such-user-tern-test")
            .unwrap_err()
            .contains("no such user"));
        assert!(lookup("a\0b").is_err());
    }
}
