//! Thin wrappers over what the operating system offers a service: the service manager's
//! notification socket, and the ways a process confines itself (Landlock, io_uring
//! restrictions). A leaf: nothing here knows tern's configuration or its workers.

pub mod landlock;
pub mod notify;
pub mod uring_restrict;
