//! What an object's first bytes say it is. Extensions are chosen by the uploader; the
//! container's magic bytes are not, so a `.mp4` that is really a ZIP, an executable or a page
//! of HTML is told apart before any workflow sees it. `infer` knows most containers; the media
//! containers it lacks (MPEG-TS, RealMedia, AC-3, CAF, any ISO-BMFF brand) are checked here.
//! HLS playlists are told apart too, and what they name is checked: a processor fetches it.

/// How many leading bytes [`sniff`] needs at most: one ranged read of the object.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// A verdict on an object's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A media container (its MIME type).
    Media(&'static str),
    /// An extended M3U (HLS) playlist: media only as far as what it names is.
    Playlist,
    /// Positively something else: an archive, executable, document, font, page or still image.
    Other(&'static str),
    /// No signature recognised (several listed formats have none that is reliable).
    Unknown,
}

/// Identifies the container of an object whose name has `extension` (lower case) from its
/// first bytes. GIF counts as media (MPS transcodes it); a JPEG stream is media only as
/// `.mjpeg`, and a JPEG 2000 file only when its brand is Motion JPEG 2000.
pub fn sniff(head: &[u8], extension: Option<&str>) -> Content {
    // Before any container: a browser that reads these bytes as markup runs its scripts,
    // whatever else they might also parse as.
    if let Some(markup) = markup(head) {
        return Content::Other(markup);
    }
    if is_playlist(head) {
        return Content::Playlist;
    }
    if let Some(media) = missing_from_infer(head) {
        return Content::Media(media);
    }
    let Some(kind) = infer::get(head) else {
        return Content::Unknown;
    };
    let mime = kind.mime_type();
    match kind.matcher_type() {
        infer::MatcherType::Audio | infer::MatcherType::Video => Content::Media(mime),
        _ if mime == "image/gif" || mime == "application/x-shockwave-flash" => Content::Media(mime),
        _ if mime == "image/jpeg" && matches!(extension, Some("mjpeg")) => {
            Content::Media("video/x-motion-jpeg")
        }
        _ if mime == "image/jp2" && iso_brand(head) == Some(*b"mjp2") => {
            Content::Media("video/mj2")
        }
        _ => Content::Other(mime),
    }
}

/// The MIME type of HLS playlists.
pub const PLAYLIST: &str = "application/vnd.apple.mpegurl";

/// Whether a file name has a playlist's extension (`.m3u8`, `.m3u`, in any case).
pub fn is_playlist_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("m3u8") || ext.eq_ignore_ascii_case("m3u"))
}

/// An extended M3U playlist as lenient players read one: `#EXTM3U` after a byte-order mark
/// and whitespace, in any case.
fn is_playlist(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let text = text.trim_ascii_start();
    text.get(..7)
        .is_some_and(|t| t.eq_ignore_ascii_case(b"#EXTM3U"))
}

/// The first URI a playlist names that is not a plain file beside it, or `None` when every
/// one is. URIs are each line that is not a tag, and the value of every attribute whose name
/// ends in `URI` (`URI`, `SERVER-URI`), quoted or not; lines end at CR as well as LF, and
/// whitespace inside tags is ignored, as lenient parsers (ffmpeg's among them) read them.
/// Text that is not UTF-8 names nothing checkable, so it is foreign as a whole.
pub fn foreign_playlist_entry(text: &[u8]) -> Option<String> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let Ok(text) = std::str::from_utf8(text) else {
        return Some("(text that is not UTF-8)".into());
    };
    for line in text.split(['\r', '\n']).map(str::trim) {
        let Some(tag) = line.strip_prefix('#') else {
            if !line.is_empty() && !is_local_file(line) {
                return Some(line.to_owned());
            }
            continue;
        };
        let tag: String = tag.chars().filter(|c| !c.is_whitespace()).collect();
        // Lower-casing ASCII keeps every byte where it was, so positions carry over.
        for (at, _) in tag.to_ascii_lowercase().match_indices("uri=") {
            let value = &tag[at + 4..];
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next(),
                None => value.split(',').next(),
            };
            if let Some(value) = value.filter(|v| !is_local_file(v)) {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// A plain file name in the playlist's own folder, from an alphabet that cannot spell a
/// scheme, a path, an escape (`%`), a query or a variable (`{$name}`): letters, digits, `_`,
/// `-` and `.`, starting with a letter, digit or `_`, without `..`. Never a playlist itself:
/// what a nested playlist names would go unchecked.
fn is_local_file(name: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255
        && name.chars().all(plain)
        && !name.contains("..")
        && !is_playlist_name(name)
}

/// Whether a store serving an object with this `Content-Type` has browsers render or run it
/// (HTML, XHTML, SVG or any other XML, scripts), whatever its bytes.
pub fn is_active_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    let essence = essence.trim().to_ascii_lowercase();
    essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "text/html"
                | "text/xml"
                | "application/xml"
                | "text/xsl"
                | "text/javascript"
                | "application/javascript"
                | "application/x-javascript"
                | "text/ecmascript"
                | "application/ecmascript"
        )
}

/// Markup as a lenient reader sees it (a browser, a CDN's sniffer): after a byte-order mark
/// and whitespace, in any case, `<` opening a tag, a declaration or a processing
/// instruction. Named by the tags it holds.
fn markup(head: &[u8]) -> Option<&'static str> {
    let text = ascii_text(head);
    let text = text.trim_ascii_start();
    let opens = text.first() == Some(&b'<')
        && text
            .get(1)
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'!' | b'?' | b'/'));
    if !opens {
        return None;
    }
    let text = text.to_ascii_lowercase();
    let has = |tag: &[u8]| text.windows(tag.len()).any(|w| w == tag);
    Some(if has(b"<html") || has(b"<script") || has(b"xhtml") {
        "text/html"
    } else if has(b"<svg") {
        "image/svg+xml"
    } else if text.starts_with(b"<?") {
        "application/xml"
    } else {
        "text/html"
    })
}

/// The bytes after a byte-order mark; UTF-16 is narrowed to its ASCII prefix, which is all
/// that markup detection needs.
fn ascii_text(head: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let little_endian = match head.get(..2) {
        Some(b"\xff\xfe") => true,
        Some(b"\xfe\xff") => false,
        _ => return head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head).into(),
    };
    let units = head[2..].chunks_exact(2).map(|u| match little_endian {
        true => (u[0], u[1]),
        false => (u[1], u[0]),
    });
    let ascii = units.map_while(|(low, high)| (high == 0 && low.is_ascii()).then_some(low));
    ascii.collect::<Vec<u8>>().into()
}

fn missing_from_infer(head: &[u8]) -> Option<&'static str> {
    // MPEG transport streams: a sync byte every 188 bytes (every 192 in M2TS, after a
    // four-byte timestamp), on every packet the head holds (up to eight), at least two.
    let sync = |first: usize, step: usize| {
        head.len() > first + step
            && (first..head.len().min(first + 8 * step))
                .step_by(step)
                .all(|at| head[at] == 0x47)
    };
    if sync(0, 188) || sync(4, 192) {
        return Some("video/mp2t");
    }
    if head.starts_with(b".RMF") {
        return Some("application/vnd.rn-realmedia");
    }
    if head.starts_with(b".ra\xfd") {
        return Some("audio/x-pn-realaudio");
    }
    if head.starts_with(b"caff") {
        return Some("audio/x-caf");
    }
    if head.starts_with(b"\x0b\x77") && head.len() > 5 {
        return Some("audio/ac3");
    }
    // ISO base media files that `infer` does not name (3GP, F4V, other brands) are media
    // unless their brand is a still-image one (HEIF, AVIF, JPEG 2000, camera raw).
    if let Some(brand) = iso_brand(head)
        && infer::get(head).is_none()
        && !matches!(
            &brand,
            b"heic"
                | b"heix"
                | b"hevc"
                | b"mif1"
                | b"msf1"
                | b"avif"
                | b"avis"
                | b"jp2 "
                | b"jpx "
                | b"jpm "
                | b"crx "
        )
    {
        return Some("video/mp4");
    }
    None
}

/// The major brand of an ISO base media file (`ftyp` box first), or of a JPEG 2000 file
/// (signature box, then `ftyp`).
fn iso_brand(head: &[u8]) -> Option<[u8; 4]> {
    let at = if head.get(4..8) == Some(b"ftyp") {
        8
    } else if head.get(16..20) == Some(b"ftyp") {
        20
    } else {
        return None;
    };
    head.get(at..at + 4)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 0x18];
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(brand);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(brand);
        b.extend_from_slice(b"mp41");
        b
    }

    /// Real files are longer than their signatures, and some matchers need the context.
    fn padded(mut head: Vec<u8>) -> Vec<u8> {
        head.resize(head.len().max(512), 0);
        head
    }

    fn transport_stream(packet: usize, offset: usize) -> Vec<u8> {
        let mut b = vec![0u8; packet * 3];
        for p in 0..3 {
            b[p * packet + offset] = 0x47;
        }
        b
    }

    #[test]
    fn media_containers_are_media() {
        let riff = |form: &[u8; 4]| [b"RIFF\x24\x00\x00\x00".as_slice(), form, b"fmt "].concat();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (ftyp(b"isom"), "video/mp4"),
            (ftyp(b"3gp5"), "video/mp4"),
            (ftyp(b"M4A "), "audio/m4a"),
            (ftyp(b"qt  "), "video/quicktime"),
            (
                b"\x1a\x45\xdf\xa3\x93\x42\x82\x88matroska".to_vec(),
                "video/x-matroska",
            ),
            (b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec(), "audio/mpeg"),
            (b"\xff\xfb\x90\x64\x00\x00\x00\x00".to_vec(), "audio/mpeg"),
            (riff(b"WAVE"), "audio/x-wav"),
            (riff(b"AVI "), "video/x-msvideo"),
            (b"fLaC\x00\x00\x00\x22".to_vec(), "audio/x-flac"),
            (b"FLV\x01\x05\x00\x00\x00\x09".to_vec(), "video/x-flv"),
            (transport_stream(188, 0), "video/mp2t"),
            (transport_stream(192, 4), "video/mp2t"),
            (
                b".RMF\x00\x00\x00\x12".to_vec(),
                "application/vnd.rn-realmedia",
            ),
            (b"GIF89a\x01\x00\x01\x00".to_vec(), "image/gif"),
        ];
        for (head, mime) in cases {
            assert_eq!(
                sniff(&padded(head.clone()), Some("mp4")),
                Content::Media(mime),
                "{head:?}"
            );
        }
    }

    #[test]
    fn other_files_are_named_and_unknown_bytes_are_unknown() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec(),
                "application/zip",
            ),
            (
                b"MZ\x90\x00\x03\x00\x00\x00".to_vec(),
                "application/vnd.microsoft.portable-executable",
            ),
            (
                b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
                "application/x-executable",
            ),
            (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3".to_vec(), "application/pdf"),
            (b"<!DOCTYPE html><html><body>".to_vec(), "text/html"),
            (
                b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec(),
                "image/png",
            ),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec(), "image/jpeg"),
            (ftyp(b"heic"), "image/heif"),
            (
                b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 \x00\x00\x00\x00jp2 "
                    .to_vec(),
                "image/jp2",
            ),
        ];
        for (head, mime) in cases {
            let got = sniff(&padded(head), Some("mp4"));
            assert!(
                matches!(got, Content::Other(m) if m == mime),
                "{mime}: {got:?}"
            );
        }
        assert_eq!(sniff(b"just some words", Some("mp4")), Content::Unknown);
        // A camera raw file in an ISO box is not video.
        assert!(!matches!(
            sniff(&padded(ftyp(b"crx ")), None),
            Content::Media(_)
        ));
        // Two sync bytes among other data are chance, not a transport stream.
        let mut chance = vec![0u8; 600];
        (chance[0], chance[188]) = (0x47, 0x47);
        assert_eq!(sniff(&chance, Some("ts")), Content::Unknown);
        assert_eq!(sniff(b"", None), Content::Unknown);
    }

    #[test]
    fn markup_is_never_media_however_it_starts() {
        let cases: [(&[u8], &str); 10] = [
            (b"<svg onload=alert(1)>", "image/svg+xml"),
            (b"<SVG\nonload=alert(1)>", "image/svg+xml"),
            (
                b"\xef\xbb\xbf \r\n<?xml version=\"1.0\"?><svg/>",
                "image/svg+xml",
            ),
            (b"<?xml version=\"1.0\"?><MPD/>", "application/xml"),
            (b"\t<HtMl\n>", "text/html"),
            (b"<script>alert(1)</script>", "text/html"),
            (b"<!doctype html>", "text/html"),
            (
                b"<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\">",
                "text/html",
            ),
            (b"\xff\xfe<\0s\0v\0g\0>\0", "image/svg+xml"),
            (b"\xfe\xff\0<\0b\0>", "text/html"),
        ];
        for (head, mime) in cases {
            assert_eq!(sniff(head, Some("mp4")), Content::Other(mime), "{head:?}");
        }
        // Markup wins even over bytes that would also parse as a container.
        let mut polyglot = b"<svg".to_vec();
        polyglot.extend_from_slice(&ftyp(b"isom")[4..]);
        assert_eq!(sniff(&polyglot, None), Content::Other("image/svg+xml"));
        // Text that is not markup stays unknown.
        for text in [b"a < b".as_slice(), b"<3 words", b"< svg"] {
            assert_eq!(sniff(text, Some("mp4")), Content::Unknown, "{text:?}");
        }
    }

    #[test]
    fn playlists_are_told_apart_however_they_start() {
        for head in [
            b"#EXTM3U\n#EXT-X-VERSION:3\n".as_slice(),
            b"\xef\xbb\xbf#EXTM3U\n",
            b"\r\n  #extm3u\n",
        ] {
            assert_eq!(sniff(head, Some("mp4")), Content::Playlist, "{head:?}");
        }
        assert!(is_playlist_name("a.m3u8") && is_playlist_name("b.M3U"));
        assert!(!is_playlist_name("m3u8") && !is_playlist_name("a.m3u8.mp4"));
    }

    #[test]
    fn a_local_playlist_names_only_plain_files_beside_it() {
        let local = b"\xef\xbb\xbf#EXTM3U\n#EXT-X-VERSION:7\n\
            #EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\",IV=0x1\n\
            #EXTINF:10.0,Title\r\nseg_0.ts\r\n\n  seg-1.TS  \n#EXT-X-ENDLIST\n";
        assert_eq!(foreign_playlist_entry(local), None);
        let foreign = [
            (
                "http://169.254.169.254/latest/meta-data/",
                "http://169.254.169.254/latest/meta-data/",
            ),
            ("HTTPS://example.com/x.ts", "HTTPS://example.com/x.ts"),
            ("file:x.ts", "file:x.ts"),
            ("../../bob/x.ts", "../../bob/x.ts"),
            ("/etc/passwd", "/etc/passwd"),
            ("sub/x.ts", "sub/x.ts"),
            ("..\\bob\\x.ts", "..\\bob\\x.ts"),
            ("%2e%2e%2fbob%2fx.ts", "%2e%2e%2fbob%2fx.ts"),
            ("x.ts?X-Amz-Signature=1", "x.ts?X-Amz-Signature=1"),
            ("{$base}x.ts", "{$base}x.ts"),
            (".hidden.ts", ".hidden.ts"),
            ("-i.ts", "-i.ts"),
            ("low.m3u8", "low.m3u8"),
            ("a.ts\rhttp://evil/x.ts", "http://evil/x.ts"),
            (
                "#EXT-X-KEY:METHOD=AES-128,URI=\"http://evil/k\"",
                "http://evil/k",
            ),
            ("#EXT-X-MAP:URI=/etc/passwd", "/etc/passwd"),
            ("#EXT-X-MEDIA:TYPE=AUDIO,uri = \"../a.m3u8\"", "../a.m3u8"),
            (
                "#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://evil/s\"",
                "http://evil/s",
            ),
            (
                "#EXT-X-SESSION-DATA:DATA-ID=\"x\",URI=\"//evil/d.json\"",
                "//evil/d.json",
            ),
        ];
        for (line, entry) in foreign {
            let playlist = format!("#EXTM3U\n#EXTINF:10,\nok.ts\n{line}\n");
            let found = foreign_playlist_entry(playlist.as_bytes());
            assert_eq!(found.as_deref(), Some(entry), "{line}");
        }
        // An unterminated quote runs to the end of the line, which is checked as the value.
        let open = b"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p.mp4\n";
        assert_eq!(foreign_playlist_entry(open), None);
        let open = b"#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p.mp4,x=../y\n";
        assert!(foreign_playlist_entry(open).is_some());
        assert!(foreign_playlist_entry(b"#EXTM3U\n\xff\xfe.ts\n").is_some());
    }

    #[test]
    fn active_types_are_those_browsers_render_or_run() {
        for active in [
            "text/html",
            "Text/HTML; charset=utf-8",
            "application/xhtml+xml",
            "image/svg+xml",
            " text/xml ",
            "application/xml",
            "application/javascript",
            "text/javascript;charset=utf-8",
        ] {
            assert!(is_active_type(active), "{active}");
        }
        for passive in ["video/mp4", "application/octet-stream", "text/plain", ""] {
            assert!(!is_active_type(passive), "{passive}");
        }
    }

    #[test]
    fn a_few_still_image_formats_are_media_under_their_own_names() {
        let jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00";
        assert!(matches!(sniff(jpeg, Some("mjpeg")), Content::Media(_)));
        let mut mj2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftyp".to_vec();
        mj2.extend_from_slice(b"mjp2\x00\x00\x00\x00mjp2");
        assert_eq!(sniff(&mj2, Some("mj2")), Content::Media("video/mj2"));
    }
}
