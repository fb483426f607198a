//! Our SigV4 signer against an independent one (`aws-sigv4`, the AWS SDK's), on generated requests.

mod mock;

use proptest::prelude::*;
use s32s3_minio_admin::sigv4::{self, Credentials, SigningRequest};
use time::OffsetDateTime;

fn segment() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 $&+,;=@~._\\-é☃!*'()]{1,12}").unwrap()
}

fn query_part() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 /+=&?%~._\\-é]{0,10}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_aws_sigv4(
        method in prop::sample::select(vec!["GET", "PUT", "POST", "DELETE", "HEAD"]),
        segments in prop::collection::vec(segment(), 0..4),
        query in prop::collection::btree_map("[a-zA-Z][a-zA-Z0-9_-]{0,8}", query_part(), 0..4),
        meta in prop::collection::btree_map("[a-z]{1,8}", "[a-zA-Z0-9]([a-zA-Z0-9 ]{0,14}[a-zA-Z0-9])?", 0..3),
        body in prop::collection::vec(any::<u8>(), 0..64),
        secret in "[a-zA-Z0-9/+]{10,40}",
        region in prop::sample::select(vec!["us-east-1", "eu-west-3", ""]),
        unix in 0i64..4_000_000_000,
    ) {
        let time = OffsetDateTime::from_unix_timestamp(unix).unwrap();
        let date = sigv4::amz_date(time);
        let hash = sigv4::sha256_hex(&body);
        let path = format!("/{}", segments.join("/"));
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let meta_headers: Vec<(String, String)> =
            meta.iter().map(|(k, v)| (format!("x-amz-meta-{k}"), v.clone())).collect();
        let mut headers: Vec<(&str, &str)> =
            vec![("host", "minio.example:9000"), ("x-amz-content-sha256", &hash), ("x-amz-date", &date)];
        headers.extend(meta_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));

        let credentials = Credentials::new("AKIDEXAMPLE", secret.clone());
        let ours = sigv4::sign(
            &SigningRequest { method, path: &path, query: &query, headers: &headers, payload_sha256: &hash },
            &credentials,
            region,
            "s3",
            time,
        );

        // What goes on the wire: the path encoded once, the canonical query.
        let mut uri = sigv4::uri_encode(&path, true);
        let canonical_query = sigv4::canonical_query(&query);
        if !canonical_query.is_empty() {
            uri = format!("{uri}?{canonical_query}");
        }
        let owned: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let theirs = mock::expected_signature("AKIDEXAMPLE", &secret, region, &date, method, &uri, &owned, &body)
            .expect("aws-sigv4 signs the request");
        prop_assert_eq!(ours.signature, theirs, "canonical request:\n{}", ours.canonical_request);
    }
}

#[test]
fn aws_example_matches_aws_sigv4_too() {
    // The S3 documentation's GET-object example, through the independent signer.
    let headers = [
        ("host".to_owned(), "examplebucket.s3.amazonaws.com".to_owned()),
        ("range".to_owned(), "bytes=0-9".to_owned()),
        ("x-amz-content-sha256".to_owned(), sigv4::EMPTY_PAYLOAD_SHA256.to_owned()),
        ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
    ];
    let theirs = mock::expected_signature(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "us-east-1",
        "20130524T000000Z",
        "GET",
        "/test.txt",
        &headers,
        b"",
    );
    assert_eq!(theirs.as_deref(), Some("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
}
