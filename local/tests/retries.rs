//! Forgiving where the protocol allows it (issue 11): a client whose answer was lost sends the same
//! request again, and must get the success it missed rather than an error that aborts it.

mod common;
use common::*;

#[tokio::test]
async fn the_last_chunk_sent_again_is_201_with_the_same_bytes_and_400_with_others() {
    let s = TestServer::start().await;
    let data = pdf(3 * 204_800 + 77);
    let total = data.len();
    let range = |a: usize, b: usize| Some(format!("bytes {a}-{}/{total}", b - 1));
    let (st, b) = s
        .chunk("alice", None, range(0, 204_800), data[..204_800].to_vec())
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();
    // The first chunk again, by id: same bytes, same answer.
    let (st, again) = s
        .chunk(
            "alice",
            Some(&id),
            range(0, 204_800),
            data[..204_800].to_vec(),
        )
        .await;
    assert_eq!((st, &again["offset"]), (201, &b["offset"]), "{again}");
    assert_eq!(again["upload_id"], b["upload_id"]);

    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            range(204_800, 409_600),
            data[204_800..409_600].to_vec(),
        )
        .await;
    assert_eq!((st, b["offset"].as_u64()), (201, Some(409_600)), "{b}");
    // Sent again: 201, nothing moves.
    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            range(204_800, 409_600),
            data[204_800..409_600].to_vec(),
        )
        .await;
    assert_eq!((st, b["offset"].as_u64()), (201, Some(409_600)), "{b}");
    // The same range with other bytes: the offset mismatch it always was, with the offset.
    let mut other = data[204_800..409_600].to_vec();
    other[100] ^= 1;
    let (st, b) = s
        .chunk("alice", Some(&id), range(204_800, 409_600), other)
        .await;
    assert_eq!(
        (st, code(&b), b["offset"].as_u64()),
        (400, "offset_mismatch", Some(409_600))
    );
    // An older chunk is not the last one: a mismatch too.
    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            range(0, 204_800),
            data[..204_800].to_vec(),
        )
        .await;
    assert_eq!((st, code(&b)), (400, "offset_mismatch"), "{b}");

    // The final chunk, sent twice, then completion: the file is intact.
    for _ in 0..2 {
        let (st, b) = s
            .chunk(
                "alice",
                Some(&id),
                range(409_600, total),
                data[409_600..].to_vec(),
            )
            .await;
        assert_eq!((st, b["offset"].as_u64()), (201, Some(total as u64)), "{b}");
    }
    let (st, media) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(s.fetch(media["url"].as_str().unwrap()).await.1, data);
    // Once completed, a chunk is refused as before.
    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            range(409_600, total),
            data[409_600..].to_vec(),
        )
        .await;
    assert_eq!((st, code(&b)), (400, "upload_completed"), "{b}");
}
