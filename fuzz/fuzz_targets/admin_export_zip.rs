#![no_main]
//! Export-zip validation: arbitrary bytes never panic; whatever validates re-validates after filtering
//! to one bucket.

use libfuzzer_sys::fuzz_target;
use s32s3_minio_admin::{BucketMetadataExport, Error, IamExport};

fuzz_target!(|data: &[u8]| {
    match IamExport::from_bytes(data.to_vec()) {
        Ok(export) => assert_eq!(export.as_bytes(), data),
        Err(Error::InvalidArchive { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
    match BucketMetadataExport::from_bytes(data.to_vec()) {
        Ok(export) => {
            for bucket in export.buckets() {
                let one = export.only_bucket(&bucket).expect("a listed bucket can be extracted");
                assert_eq!(one.buckets(), [bucket]);
            }
        }
        Err(Error::InvalidArchive { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
});
