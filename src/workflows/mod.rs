//! Media workflows and the pure rules that decide whether an object triggers one.

/// Video extensions MPS treats as media (protocols.md section 7), lower case.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "3gp", "asf", "avi", "dat", "dv", "flv", "f4v", "gif", "m2t", "m3u8", "m4v", "mj2", "mjpeg",
    "mkv", "mov", "mp4", "mpe", "mpg", "mpeg", "mts", "ogg", "qt", "rm", "rmvb", "swf", "ts",
    "vob", "wmv", "webm",
];

/// Audio extensions MPS treats as media, lower case.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "aac", "ac3", "acm", "amr", "ape", "caf", "flac", "m4a", "mp3", "ra", "wav", "wma", "aiff",
];

/// What the media rule decided about a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCheck {
    /// No `.` at all: MPS treats extension-less files as media.
    NoExtension,
    /// A listed extension, lower-cased.
    Media(String),
    /// An extension that is not listed (possibly empty, for a name ending in `.`).
    NotMedia(String),
    /// A folder marker (ends in `/`) or an empty name.
    NotAFile,
}

impl MediaCheck {
    pub fn is_media(&self) -> bool {
        matches!(self, MediaCheck::NoExtension | MediaCheck::Media(_))
    }
}

/// Applies the MPS media rule to the last path segment of `key`: no `.` at all, or an
/// extension from the video/audio lists, compared case-insensitively.
pub fn media_check(key: &str) -> MediaCheck {
    if key.is_empty() || key.ends_with('/') {
        return MediaCheck::NotAFile;
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rsplit_once('.') {
        None => MediaCheck::NoExtension,
        Some((_, ext)) => {
            let ext = ext.to_ascii_lowercase();
            if VIDEO_EXTENSIONS.contains(&ext.as_str()) || AUDIO_EXTENSIONS.contains(&ext.as_str())
            {
                MediaCheck::Media(ext)
            } else {
                MediaCheck::NotMedia(ext)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(media_check("a/trip.MP4"), MediaCheck::Media("mp4".into()));
        assert_eq!(media_check("song.FlAc"), MediaCheck::Media("flac".into()));
        assert_eq!(media_check("dir/README"), MediaCheck::NoExtension);
        assert_eq!(
            media_check("dir/movie."),
            MediaCheck::NotMedia(String::new())
        );
        assert_eq!(
            media_check("dir/notes.txt"),
            MediaCheck::NotMedia("txt".into())
        );
        assert_eq!(media_check("dir.mp4/notes"), MediaCheck::NoExtension);
        assert_eq!(media_check("dir/"), MediaCheck::NotAFile);
        assert_eq!(media_check(""), MediaCheck::NotAFile);
        assert_eq!(
            media_check("archive.tar.mp4"),
            MediaCheck::Media("mp4".into())
        );
        assert_eq!(media_check(".mp4"), MediaCheck::Media("mp4".into()));
    }

    proptest! {
        #[test]
        fn listed_extensions_match_in_any_case(
            stem in "[a-zA-Z0-9 _-]{0,20}",
            idx in 0usize..(VIDEO_EXTENSIONS.len() + AUDIO_EXTENSIONS.len()),
            upper in proptest::collection::vec(any::<bool>(), 8),
        ) {
            let ext = VIDEO_EXTENSIONS.iter().chain(AUDIO_EXTENSIONS).nth(idx).unwrap();
            let mixed: String = ext.chars().zip(upper.iter().cycle())
                .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c }).collect();
            let key = format!("dir/{stem}.{mixed}");
            prop_assert!(media_check(&key).is_media());
        }

        #[test]
        fn names_without_a_dot_are_media(dir in "[a-z/]{0,10}", name in "[^./]{1,20}") {
            let key = format!("{dir}{name}");
            prop_assert!(media_check(&key).is_media());
        }

        #[test]
        fn folder_markers_and_trailing_dots_never_match(s in "[^/]{0,20}") {
            let folder = format!("{s}/");
            let trailing_dot = format!("{s}.");
            prop_assert!(!media_check(&folder).is_media());
            prop_assert!(!media_check(&trailing_dot).is_media());
        }

        #[test]
        fn unlisted_extensions_do_not_match(stem in "[a-z]{1,8}", ext in "[a-z0-9]{1,6}") {
            let listed = VIDEO_EXTENSIONS.contains(&ext.as_str()) || AUDIO_EXTENSIONS.contains(&ext.as_str());
            let key = format!("{stem}.{ext}");
            prop_assert_eq!(media_check(&key).is_media(), listed);
        }
    }
}
