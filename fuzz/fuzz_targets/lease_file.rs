#![no_main]
//! The lock object, as anyone who can write the destination could leave it: parsing never panics, and
//! what parses is judged without panicking (expiry at any time, whether its holder is provably dead).
//! A holder in another PID namespace, on another boot or another host, or of an old lock without those
//! fields, is never taken for dead.

use libfuzzer_sys::fuzz_target;
use s32s3_core::format::lease::{Holder, parse_lock};

fuzz_target!(|data: &[u8]| {
    let Ok(info) = parse_lock(data) else { return };
    for secs in [0, 1_700_000_000, 253_402_300_799] {
        let now = time::OffsetDateTime::from_unix_timestamp(secs).expect("in range");
        let _ = info.expired(now);
    }
    let me = Holder::current();
    let dead = info.holder_dead(&me);
    if dead {
        assert_eq!(info.host, me.host);
        assert!(info.boot_id.is_some() && info.boot_id == me.boot_id);
        assert!(info.pid_namespace.is_some() && info.pid_namespace == me.pid_namespace);
        assert_ne!(info.pid, me.pid);
    }
    let elsewhere = Holder { pid_namespace: Some("pid:[0]".into()), ..me };
    assert!(info.pid_namespace.as_deref() == Some("pid:[0]") || !info.holder_dead(&elsewhere));
    // A lock round-trips through its own format.
    let again = parse_lock(&serde_json::to_vec(&info).expect("serializes")).expect("re-parses");
    assert_eq!(again, info);
});
