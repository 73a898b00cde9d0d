//! Create (embed, share), get, update, delete and click, over HTTP against the real local server.

mod common;
use common::*;
use serde_json::{json, Value};

async fn create(s: &TestServer, user: &str, body: Value) -> (u16, Value) {
    json_of(
        s.client
            .post(s.url("/api/v2/media/"))
            .header("authorization", s.auth(user))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn uploaded_image(s: &TestServer, user: &str) -> Value {
    let image = png(16, 16, 21);
    let (_, b) = s.chunk(user, None, None, image.clone()).await;
    let (st, media) = s
        .complete(
            user,
            b["upload_id"].as_str().unwrap(),
            &md5_hex(&image),
            None,
        )
        .await;
    assert_eq!(st, 201);
    media
}

#[tokio::test]
async fn embed_and_share_media() {
    let s = TestServer::start().await;
    let (st, m) = create(&s, "alice", json!({"type": "embed", "embed": {"embed_type": "giphy", "embed_id": "abc", "url": "https://giphy.example/abc", "metadata": {"w": 1}}})).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["type"], "embed");
    assert_eq!(m["embed"]["embed_type"], "giphy");
    assert_eq!(m["embed"]["embed_id"], "abc");
    assert_eq!(m["embed"]["metadata"]["w"], 1);
    assert!(m["embed"]["id"].is_u64());
    let (st, got) = s.get_media("bob", m["id"].as_u64().unwrap()).await;
    assert_eq!((st, &got), (200, &m));

    let (st, m) = create(&s, "alice", json!({"type": "share", "shared_object": 607})).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(
        (
            m["type"].as_str(),
            m["embed"]["embed_type"].as_str(),
            m["embed"]["embed_id"].as_str()
        ),
        (Some("share"), Some("sc_shared_object"), Some("607"))
    );
    let (st, m) = create(&s, "alice", json!({"type": "share", "event_object": 12})).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["embed"]["embed_type"], "sc_shared_event");
}

#[tokio::test]
async fn create_errors_use_the_field_form() {
    let s = TestServer::start().await;
    for (body, field) in [
        (
            json!({"type": "embed", "embed": {"embed_type": "sc_link", "embed_id": "1"}}),
            "embed",
        ),
        (
            json!({"type": "embed", "embed": {"embed_type": "giphy"}}),
            "embed",
        ),
        (json!({"type": "embed"}), "embed"),
        (json!({"type": "share"}), "shared_object"),
        (
            json!({"type": "share", "shared_object": -3}),
            "shared_object",
        ),
        (
            json!({"type": "share", "shared_object": 1, "event_object": 2}),
            "shared_object",
        ),
        (json!({"type": "url", "url": "https://example.com"}), "url"),
        (
            json!({"type": "image", "url": "https://example.com/a.png"}),
            "url",
        ),
        (json!({"type": "hologram"}), "type"),
        (json!({}), "type"),
    ] {
        let (st, b) = create(&s, "alice", body.clone()).await;
        assert_eq!(st, 400, "{body}: {b}");
        assert_eq!(field_error(&b), field, "{body}: {b}");
        assert_eq!(b["errors"][0]["messages"][0]["code"], "invalid");
    }
    let r = s
        .client
        .post(s.url("/api/v2/media/"))
        .header("authorization", s.auth("alice"))
        .header("content-type", "application/json")
        .body("{nope");
    let (st, b) = json_of(r.send().await.unwrap()).await;
    assert_eq!((st, code(&b)), (400, "invalid_json"));
}

#[tokio::test]
async fn get_of_unknown_or_malformed_ids_is_404() {
    let s = TestServer::start().await;
    for path in [
        "/api/v2/media/999/",
        "/api/v2/media/abc/",
        "/api/v2/media/99999999999999999999999/",
    ] {
        let r = s
            .client
            .get(s.url(path))
            .header("authorization", s.auth("alice"));
        let (st, b) = json_of(r.send().await.unwrap()).await;
        assert_eq!((st, code(&b)), (404, "not_found"), "{path}");
    }
    if skip_on_lambda("unrouted paths and methods are answered by API Gateway, not by a function") {
        return;
    }
    let (st, b) = json_of(s.client.get(s.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!((st, code(&b)), (404, "not_found"));
    let (st, b) = json_of(
        s.client
            .get(s.url("/api/v2/media/upload/chunk/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code(&b)), (405, "method_not_allowed"));
}

#[tokio::test]
async fn delete_is_for_the_creator_and_removes_record_and_bytes() {
    let s = TestServer::start().await;
    let media = uploaded_image(&s, "alice").await;
    let id = media["id"].as_u64().unwrap();
    let file_url = media["image"].as_str().unwrap().to_string();
    let del = |user: &str| {
        s.client
            .delete(s.url(&format!("/api/v2/media/{id}/")))
            .header("authorization", s.auth(user))
    };
    let (st, b) = json_of(del("mallory").send().await.unwrap()).await;
    assert_eq!((st, code(&b)), (403, "permission_denied"));
    assert_eq!(s.fetch(&file_url).await.0, 200);
    let (st, _) = json_of(del("alice").send().await.unwrap()).await;
    assert_eq!(st, 204);
    assert_eq!(s.get_media("alice", id).await.0, 404);
    assert_eq!(s.fetch(&file_url).await.0, 404, "the stored bytes are gone");
    let (st, _) = json_of(del("alice").send().await.unwrap()).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn update_rules() {
    let s = TestServer::start().await;
    let media = uploaded_image(&s, "alice").await;
    let id = media["id"].as_u64().unwrap();
    let put = |user: &str, body: Value| {
        s.client
            .put(s.url(&format!("/api/v2/media/{id}/")))
            .header("authorization", s.auth(user))
            .json(&body)
    };
    let (st, b) = json_of(
        put("mallory", json!({"image": "https://example.com/a.png"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code(&b)), (403, "permission_denied"));
    let (st, b) = json_of(
        put("alice", json!({"image": "https://example.com/a.png"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, code(&b)),
        (400, "not_updatable"),
        "only url media have a preview image"
    );
    let r = s
        .client
        .patch(s.url("/api/v2/media/424242/"))
        .header("authorization", s.auth("alice"))
        .json(&json!({}));
    assert_eq!(json_of(r.send().await.unwrap()).await.0, 404);
    assert_eq!(
        unsigned(&s.get_media("alice", id).await.1),
        unsigned(&media),
        "nothing changed"
    );
}

#[tokio::test]
async fn clicks_are_recorded_with_or_without_a_user() {
    let s = TestServer::start().await;
    let (_, m) = create(&s, "alice", json!({"type": "share", "shared_object": 1})).await;
    let id = m["id"].as_u64().unwrap();
    let url = s.url(&format!("/api/v2/media/{id}/click/"));
    let (st, _) = json_of(s.client.post(&url).send().await.unwrap()).await;
    assert_eq!(st, 204);
    let (st, _) = json_of(
        s.client
            .post(&url)
            .header("authorization", s.auth("bob"))
            .json(&json!({"ip": "203.0.113.9"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 204);
    let (st, b) = json_of(
        s.client
            .post(&url)
            .json(&json!({"ip": "not an ip"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, field_error(&b)), (400, "ip"));
    let (st, _) = json_of(
        s.client
            .post(&url)
            .header("authorization", "Bearer forged")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = json_of(
        s.client
            .post(s.url("/api/v2/media/777/click"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 404);
    let clicks = s.clicks().await;
    assert_eq!(clicks.len(), 2);
    assert_eq!(
        (clicks[0].user.as_deref(), clicks[0].ip.as_deref()),
        (None, Some("127.0.0.1"))
    );
    assert_eq!(
        (clicks[1].user.as_deref(), clicks[1].ip.as_deref()),
        (Some("bob"), Some("203.0.113.9"))
    );
    assert!(clicks.iter().all(|c| c.media_id == id));
}
