//! The engine's conformance suite ([`s32s3_core::testkit::conformance`]) on every pair of test servers:
//! SeaweedFS→moto, moto→SeaweedFS and SeaweedFS→SeaweedFS (one server, different buckets). One test per
//! scenario and pair, so a failure names both.

use s32s3_core::testkit::{self, conformance};

/// One `#[tokio::test]` per pair for `scenario`, under the names given.
macro_rules! on_every_pair {
    ($scenario:ident: $seaweedfs_to_moto:ident, $moto_to_seaweedfs:ident, $seaweedfs_to_seaweedfs:ident) => {
        #[tokio::test]
        async fn $seaweedfs_to_moto() {
            conformance::$scenario(testkit::seaweedfs(), testkit::moto()).await;
        }

        #[tokio::test]
        async fn $moto_to_seaweedfs() {
            conformance::$scenario(testkit::moto(), testkit::seaweedfs()).await;
        }

        #[tokio::test]
        async fn $seaweedfs_to_seaweedfs() {
            conformance::$scenario(testkit::seaweedfs(), testkit::seaweedfs()).await;
        }
    };
}

on_every_pair!(incremental_counts:
    incremental_counts_seaweedfs_to_moto,
    incremental_counts_moto_to_seaweedfs,
    incremental_counts_seaweedfs_to_seaweedfs);
on_every_pair!(tricky_keys:
    tricky_keys_seaweedfs_to_moto,
    tricky_keys_moto_to_seaweedfs,
    tricky_keys_seaweedfs_to_seaweedfs);
on_every_pair!(metadata_and_tags:
    metadata_and_tags_seaweedfs_to_moto,
    metadata_and_tags_moto_to_seaweedfs,
    metadata_and_tags_seaweedfs_to_seaweedfs);
on_every_pair!(point_in_time:
    point_in_time_seaweedfs_to_moto,
    point_in_time_moto_to_seaweedfs,
    point_in_time_seaweedfs_to_seaweedfs);
on_every_pair!(rclone_made_backup:
    rclone_made_backup_seaweedfs_to_moto,
    rclone_made_backup_moto_to_seaweedfs,
    rclone_made_backup_seaweedfs_to_seaweedfs);
on_every_pair!(damaged_objects:
    damaged_objects_seaweedfs_to_moto,
    damaged_objects_moto_to_seaweedfs,
    damaged_objects_seaweedfs_to_seaweedfs);
on_every_pair!(source_history:
    source_history_seaweedfs_to_moto,
    source_history_moto_to_seaweedfs,
    source_history_seaweedfs_to_seaweedfs);
