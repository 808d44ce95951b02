//! A forked child must not repeat its parent's randomness. A user-space generator that is copied by
//! `fork()` (as a naive thread-local CSPRNG is) gives parent and child the same next bytes, which
//! would mean the same data key and nonces for two different messages. This file holds one test so
//! that the process forks with no other test thread running.

#![cfg(target_os = "linux")]
#![expect(
    unsafe_code,
    reason = "fork(2), waitpid(2) and _exit(2) have no safe wrapper in std"
)]

use custodian::crypto::fill_random;
use std::io::{Read, Write};

#[test]
fn a_forked_child_does_not_repeat_the_parents_randomness() {
    // Draw first, so that any per-thread generator state exists before the fork.
    let mut primed = [0u8; 56];
    fill_random(&mut primed).unwrap();

    let (mut reader, mut writer) = std::io::pipe().unwrap();
    // SAFETY: the child only draws randomness, writes to a pipe and calls `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut child = [0u8; 56];
        let code = match fill_random(&mut child) {
            Ok(()) if writer.write_all(&child).is_ok() => 0,
            _ => 1,
        };
        // SAFETY: ends the child without running the parent's destructors or test harness.
        unsafe { libc::_exit(code) };
    }
    drop(writer);
    let mut parent = [0u8; 56];
    fill_random(&mut parent).unwrap();
    let mut child = Vec::new();
    reader.read_to_end(&mut child).unwrap();
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );

    assert_eq!(child.len(), 56);
    assert_ne!(
        child,
        parent.to_vec(),
        "child repeated the parent's next bytes"
    );
    assert_ne!(child, primed.to_vec());
    assert_ne!(parent, primed);
}
