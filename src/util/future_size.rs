//! Test helpers: the size of the future a function returns, without calling it (the state a
//! spawned connection task holds for its whole life, pinned by size tests).

/// For a function of four arguments.
pub fn of4<A, B, C, D, F: std::future::Future>(_: impl Fn(A, B, C, D) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// For a function of six arguments.
pub fn of6<A, B, C, D, E, G, F: std::future::Future>(_: impl Fn(A, B, C, D, E, G) -> F) -> usize {
    std::mem::size_of::<F>()
}
