//! Link previews: what a page says about itself (OpenGraph, twitter cards, `<title>`, meta
//! description, oEmbed discovery) and the `sc_link` embed built from it. Pure: the fetching is done
//! by the caller (`fetch`), so every rule here is tested on literal HTML.
//!
//! The scanner reads tags, not a DOM: previews only need `<meta>`, `<link>` and `<title>`, and a
//! tolerant tag scanner copes with the broken HTML of real pages at a fraction of a parser's cost.

use serde_json::{json, Value};
use url::Url;

/// What a page declares about itself; URLs are absolute (resolved against the page's URL).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageMeta {
    pub title: Option<String>,
    pub description: Option<String>,
    pub images: Vec<String>,
    /// `og:image:width` / `og:image:height` of the first image.
    pub image_size: Option<(u32, u32)>,
    /// `og:type` as given (`video.other`, `article`, ...).
    pub og_type: Option<String>,
    /// `og:url`, else `<link rel="canonical">`.
    pub canonical: Option<String>,
    /// The JSON oEmbed endpoint the page points to.
    pub oembed: Option<String>,
}

/// The fields of an oEmbed answer that a preview uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OEmbed {
    pub kind: Option<String>,
    pub title: Option<String>,
    pub html: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumbnail_url: Option<String>,
}

/// The preview of one URL: the `sc_link` embed and the Media fields copied from it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPreview {
    pub title: String,
    pub description: Option<String>,
    pub image: Option<String>,
    pub image_size: Option<(u32, u32)>,
    /// `{"embed_type": "sc_link", "embed_id", "url", "metadata"}`; the caller adds the `id`.
    pub embed: serde_json::Map<String, Value>,
}

/// Reads the metadata of an HTML page fetched from `base`.
pub fn parse_page(html: &str, base: &Url) -> PageMeta {
    let mut meta = PageMeta::default();
    // First value wins per property; the precedence between properties is applied at the end.
    let mut props: Vec<(String, String)> = Vec::new();
    let mut title_tag: Option<String> = None;
    for tag in Tags::new(html) {
        match tag {
            Tag::Meta(attrs) => {
                let key = attr(&attrs, "property").or_else(|| attr(&attrs, "name"));
                if let (Some(k), Some(v)) = (key, attr(&attrs, "content")) {
                    let v = clean_text(v);
                    if !v.is_empty() {
                        props.push((k.to_ascii_lowercase(), v));
                    }
                }
            }
            Tag::Link(attrs) => {
                let rel = attr(&attrs, "rel").unwrap_or_default().to_ascii_lowercase();
                let href = attr(&attrs, "href").and_then(|h| absolute(base, h));
                let kind = attr(&attrs, "type")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
                if rels.contains(&"alternate") && kind == "application/json+oembed" {
                    meta.oembed = meta.oembed.or(href);
                } else if rels.contains(&"canonical") && meta.canonical.is_none() {
                    meta.canonical = href;
                }
            }
            Tag::Title(text) => {
                let t = clean_text(&text);
                if title_tag.is_none() && !t.is_empty() {
                    title_tag = Some(t);
                }
            }
        }
    }
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone()))
    };
    meta.title = first(&["og:title", "twitter:title"]).or(title_tag);
    meta.description = first(&["og:description", "twitter:description", "description"]);
    meta.og_type = first(&["og:type"]);
    if let Some(u) = first(&["og:url"]).and_then(|u| absolute(base, &u)) {
        meta.canonical = Some(u);
    }
    for (p, v) in &props {
        let is_image = matches!(
            p.as_str(),
            "og:image"
                | "og:image:url"
                | "og:image:secure_url"
                | "twitter:image"
                | "twitter:image:src"
        );
        if let Some(u) = is_image.then(|| absolute(base, v)).flatten() {
            if !meta.images.contains(&u) {
                meta.images.push(u);
            }
        }
    }
    let dim = |k: &str| first(&[k]).and_then(|v| v.trim().parse::<u32>().ok());
    meta.image_size = dim("og:image:width").zip(dim("og:image:height"));
    meta
}

/// Reads an oEmbed JSON answer; `None` when it is not one.
pub fn parse_oembed(body: &[u8]) -> Option<OEmbed> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // Providers send sizes as numbers or as strings.
    let size = |k: &str| match obj.get(k) {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Some(OEmbed {
        kind: text("type").map(|t| t.to_ascii_lowercase()),
        title: text("title"),
        html: text("html"),
        width: size("width"),
        height: size("height"),
        thumbnail_url: text("thumbnail_url"),
    })
}

/// The preview of `submitted`, whose page was read from `page_url` (after redirects). `page` is
/// `None` when the URL did not answer HTML (an image, a PDF...): the host name still gives a title.
pub fn link_preview(
    submitted: &str,
    page_url: &Url,
    page: Option<&PageMeta>,
    oembed: Option<&OEmbed>,
) -> LinkPreview {
    let empty = PageMeta::default();
    let page = page.unwrap_or(&empty);
    let mut images = page.images.clone();
    if let Some(thumb) = oembed.and_then(|o| o.thumbnail_url.as_deref()) {
        if let Some(u) = absolute(page_url, thumb) {
            if !images.contains(&u) {
                images.push(u);
            }
        }
    }
    let host = page_url.host_str().unwrap_or(submitted).to_string();
    let title = page
        .title
        .clone()
        .or_else(|| oembed.and_then(|o| o.title.clone()))
        .unwrap_or(host);
    let html = oembed.and_then(|o| o.html.clone());
    let kind = preview_type(page.og_type.as_deref(), oembed, html.is_some());
    let metadata_url = page
        .canonical
        .clone()
        .unwrap_or_else(|| page_url.to_string());
    let (width, height) = if html.is_some() {
        (oembed.and_then(|o| o.width), oembed.and_then(|o| o.height))
    } else {
        (None, None)
    };
    let mut embed = serde_json::Map::new();
    embed.insert("embed_type".into(), json!("sc_link"));
    embed.insert("embed_id".into(), json!(embed_id(submitted)));
    embed.insert("url".into(), json!(submitted));
    embed.insert(
        "metadata".into(),
        json!({
            "url": metadata_url,
            "title": title,
            "description": page.description,
            "images": images,
            "type": kind,
            "html": html,
            "width": width,
            "height": height,
        }),
    );
    LinkPreview {
        image_size: page.image_size.filter(|_| !page.images.is_empty()),
        image: images.first().cloned(),
        title,
        description: page.description.clone(),
        embed,
    }
}

/// oEmbed's vocabulary (`video`, `rich`, `photo`, `link`): the provider's type if it answered, else
/// what `og:type` says (video pages without oEmbed are still videos), else `link`.
fn preview_type(og_type: Option<&str>, oembed: Option<&OEmbed>, has_html: bool) -> String {
    if let Some(kind) = oembed.and_then(|o| o.kind.as_deref()) {
        if matches!(kind, "video" | "rich" | "photo" | "link") {
            return kind.to_string();
        }
        if has_html {
            return "rich".into();
        }
    }
    match og_type.map(str::to_ascii_lowercase) {
        Some(t) if t == "video" || t.starts_with("video.") => "video".into(),
        _ => "link".into(),
    }
}

/// A fixed-length id for a link, the same for the same URL: the hex MD5 of the URL as submitted.
pub fn embed_id(url: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(url.trim().as_bytes()))
}

/// `href` made absolute; only http(s) URLs are kept (no `javascript:` or `data:` in previews).
fn absolute(base: &Url, href: &str) -> Option<String> {
    let u = base.join(decode_entities(href.trim()).as_str()).ok()?;
    matches!(u.scheme(), "http" | "https").then(|| u.to_string())
}

/// Entities decoded, whitespace collapsed.
fn clean_text(s: &str) -> String {
    decode_entities(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| entity(&rest[1..e]).map(|c| (c, e)));
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => return None,
    })
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Debug)]
enum Tag {
    Meta(Vec<(String, String)>),
    Link(Vec<(String, String)>),
    Title(String),
}

/// The `<meta>`, `<link>` and `<title>` tags of a document, in order. Comments, scripts and styles
/// are skipped, so tags inside them do not count.
struct Tags<'a> {
    html: &'a str,
    pos: usize,
}

impl<'a> Tags<'a> {
    fn new(html: &'a str) -> Self {
        Tags { html, pos: 0 }
    }

    /// Byte offset of `needle` (ASCII, lower case) at or after `from`, ignoring ASCII case.
    fn find_ci(&self, from: usize, needle: &str) -> Option<usize> {
        let hay = self.html.as_bytes();
        let n = needle.as_bytes();
        (from..hay.len().saturating_sub(n.len() - 1))
            .find(|&i| hay[i..i + n.len()].eq_ignore_ascii_case(n))
    }
}

impl Iterator for Tags<'_> {
    type Item = Tag;

    fn next(&mut self) -> Option<Tag> {
        let bytes = self.html.as_bytes();
        loop {
            let lt = self.pos + self.html.get(self.pos..)?.find('<')?;
            let rest = &self.html[lt..];
            if rest.starts_with("<!--") {
                self.pos = self.find_ci(lt + 4, "-->").map_or(bytes.len(), |e| e + 3);
                continue;
            }
            let name_end = rest[1..]
                .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
                .map_or(rest.len(), |i| i + 1);
            let name = rest[1..name_end].to_ascii_lowercase();
            let (attrs, after) = parse_attrs(self.html, lt + name_end);
            self.pos = after;
            match name.as_str() {
                "meta" => return Some(Tag::Meta(attrs)),
                "link" => return Some(Tag::Link(attrs)),
                "title" | "script" | "style" => {
                    let close = format!("</{name}");
                    let end = self.find_ci(after, &close).unwrap_or(bytes.len());
                    self.pos = end;
                    if name == "title" {
                        return Some(Tag::Title(self.html[after..end].to_string()));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Attributes from `from` to the end of the tag (`>`); names lower-cased, values raw. Returns the
/// offset after the tag.
fn parse_attrs(html: &str, from: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let mut i = from;
    let mut attrs = Vec::new();
    let skip_ws = |mut i: usize| {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= b.len() {
            return (attrs, b.len());
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = html[start..i].to_ascii_lowercase();
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let mut value = String::new();
        if j < b.len() && b[j] == b'=' {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                let q = b[j];
                let vstart = j + 1;
                let vend = b[vstart..]
                    .iter()
                    .position(|&c| c == q)
                    .map_or(b.len(), |p| vstart + p);
                value = html[vstart..vend].to_string();
                j = (vend + 1).min(b.len());
            } else {
                let vstart = j;
                while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                    j += 1;
                }
                value = html[vstart..j].to_string();
            }
            i = j;
        }
        if !name.is_empty() {
            attrs.push((name, value));
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://news.example/a/story?x=1").unwrap()
    }

    #[test]
    fn opengraph_wins_over_title_and_relative_urls_resolve() {
        let html = r#"<!doctype html><html><head>
            <title>Plain &amp; simple</title>
            <!-- <meta property="og:title" content="commented out"> -->
            <meta name="description" content="The meta description">
            <META PROPERTY="og:title" CONTENT="Big   &quot;news&quot;">
            <meta property='og:description' content='What happened&#39;s story'>
            <meta property="og:image" content="/img/cover.jpg">
            <meta property="og:image:width" content="1200"><meta property="og:image:height" content="630">
            <meta name="twitter:image" content="https://cdn.example/t.png" />
            <meta property="og:image" content="javascript:alert(1)">
            <meta property="og:type" content="article">
            <link rel="canonical" href="https://news.example/a/story">
            <script>var s = '<meta property="og:title" content="in a script">';</script>
            </head><body></body></html>"#;
        let m = parse_page(html, &base());
        assert_eq!(m.title.as_deref(), Some("Big \"news\""));
        assert_eq!(m.description.as_deref(), Some("What happened's story"));
        assert_eq!(
            m.images,
            vec![
                "https://news.example/img/cover.jpg",
                "https://cdn.example/t.png"
            ]
        );
        assert_eq!(m.image_size, Some((1200, 630)));
        assert_eq!(m.og_type.as_deref(), Some("article"));
        assert_eq!(m.canonical.as_deref(), Some("https://news.example/a/story"));
        assert_eq!(m.oembed, None);
    }

    #[test]
    fn title_tag_and_meta_description_are_the_fallbacks() {
        let m = parse_page(
            "<html><head><TITLE>\n  Only a title </TITLE><meta content=\"desc\" name=description></head>",
            &base(),
        );
        assert_eq!(m.title.as_deref(), Some("Only a title"));
        assert_eq!(m.description.as_deref(), Some("desc"));
        assert!(m.images.is_empty());
    }

    #[test]
    fn oembed_discovery_and_answer() {
        let html = r#"<link rel="alternate" type="application/json+oembed"
            href="/oembed?url=https%3A%2F%2Fv.example%2Fw&amp;format=json" title="x">
            <link rel="alternate" type="text/xml+oembed" href="/oembed.xml">
            <meta property="og:type" content="video.other">"#;
        let m = parse_page(html, &Url::parse("https://v.example/watch?v=1").unwrap());
        assert_eq!(
            m.oembed.as_deref(),
            Some("https://v.example/oembed?url=https%3A%2F%2Fv.example%2Fw&format=json")
        );
        let o = parse_oembed(
            br#"{"type":"video","title":"A clip","html":"<iframe src=\"https://v.example/e/1\"></iframe>","width":"480","height":270,"thumbnail_url":"https://i.example/1.jpg"}"#,
        )
        .unwrap();
        assert_eq!(o.kind.as_deref(), Some("video"));
        assert_eq!((o.width, o.height), (Some(480), Some(270)));
        assert!(parse_oembed(b"<html>").is_none());

        let p = link_preview(
            "https://v.example/watch?v=1",
            &Url::parse("https://v.example/watch?v=1").unwrap(),
            Some(&m),
            Some(&o),
        );
        assert_eq!(p.title, "A clip");
        assert_eq!(p.image.as_deref(), Some("https://i.example/1.jpg"));
        let md = &p.embed["metadata"];
        assert_eq!(md["type"], "video");
        assert_eq!(
            md["html"],
            "<iframe src=\"https://v.example/e/1\"></iframe>"
        );
        assert_eq!(
            (md["width"].as_u64(), md["height"].as_u64()),
            (Some(480), Some(270))
        );
        assert_eq!(p.embed["embed_type"], "sc_link");
        assert_eq!(p.embed["embed_id"], embed_id("https://v.example/watch?v=1"));
        assert_eq!(p.embed["embed_id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn a_page_without_metadata_still_has_a_title() {
        let url = Url::parse("https://bare.example/x").unwrap();
        let m = parse_page("<html><body>hello</body></html>", &url);
        let p = link_preview("https://bare.example/x", &url, Some(&m), None);
        assert_eq!(p.title, "bare.example");
        assert_eq!(p.description, None);
        assert_eq!(p.image, None);
        let md = &p.embed["metadata"];
        assert_eq!(md["type"], "link");
        assert_eq!(md["url"], "https://bare.example/x");
        assert_eq!(md["images"], json!([]));
        assert_eq!(
            (md["html"].clone(), md["width"].clone()),
            (Value::Null, Value::Null)
        );
    }

    #[test]
    fn scanner_survives_broken_html() {
        for html in [
            "<",
            "<meta",
            "<meta content=\"x",
            "<title>unterminated",
            "<!-- x",
            "<<>>",
            "<meta/>",
            "&#xffffffff; &; &bogus;",
        ] {
            let _ = parse_page(html, &base());
        }
        assert_eq!(decode_entities("a &amp b &#x41;&#66;"), "a &amp b AB");
        assert_eq!(
            parse_page("<title>t</title><title>second</title>", &base())
                .title
                .as_deref(),
            Some("t")
        );
    }
}
