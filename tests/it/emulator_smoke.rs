//! Proves the moto harness works: bucket + put + get round trip.
use aws_sdk_s3::primitives::ByteStream;

#[tokio::test]
async fn moto_s3_round_trip() {
    let moto = crate::support::Moto::start();
    let s3 = moto.s3_client().await;

    s3.create_bucket().bucket("smoke").send().await.expect("create_bucket");
    let body = b"hello from rekey harness".to_vec();
    s3.put_object()
        .bucket("smoke")
        .key("dir/obj.txt")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put_object");
    let got = s3
        .get_object()
        .bucket("smoke")
        .key("dir/obj.txt")
        .send()
        .await
        .expect("get_object")
        .body
        .collect()
        .await
        .expect("read body")
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());
}
