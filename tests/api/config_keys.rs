//! Every configuration key is documented in docs/configuration.md and shown in
//! config/mediagate.example.toml. The keys are read from the `Config` type itself: its
//! `Deserialize` impl is driven by a deserializer that records the name of every field it is
//! asked for, so a key added to any settings type is found here without a list to keep.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use mediagate::config::Config;
use serde::Deserialize;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Every key `Config` accepts, as `section.key`; keys of an array of tables (`[[workflows]]`)
/// as `workflows[].key`.
fn config_keys() -> BTreeSet<String> {
    let keys = RefCell::new(BTreeSet::new());
    Config::deserialize(Probe {
        path: String::new(),
        keys: &keys,
    })
    .expect("the probe gives every field a value of its type");
    keys.into_inner()
}

/// A deserializer that answers each request with some value of the asked type and records the
/// path of every value that is not a table. Tables are walked field by field, options as
/// present, sequences as one element (`path[]`), so nested settings are found too.
struct Probe<'k> {
    path: String,
    keys: &'k RefCell<BTreeSet<String>>,
}

impl Probe<'_> {
    fn leaf(&self) {
        // A list of plain values is one key; only a list of tables has keys of its own.
        let key = self.path.strip_suffix("[]").unwrap_or(&self.path);
        self.keys.borrow_mut().insert(key.to_owned());
    }

    fn child(&self, name: &str) -> Self {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        };
        Probe {
            path,
            keys: self.keys,
        }
    }
}

macro_rules! leaf {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Error;

    leaf! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        deserialize_identifier => visit_str(""),
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "{}: a type that does not say what it is; teach the probe about it",
            self.path
        )))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let element = Probe {
            path: format!("{}[]", self.path),
            keys: self.keys,
        };
        visitor.visit_seq(One(Some(element)))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_seq(One(None))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A map's keys are the user's (URL -> PEM), so the map is one key.
        self.leaf();
        visitor.visit_map(Fields {
            probe: self,
            fields: &[],
            next: 0,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            probe: self,
            fields,
            next: 0,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.leaf();
        let variant: StrDeserializer<Error> = variants[0].into_deserializer();
        visitor.visit_enum(variant)
    }
}

/// A sequence of one element (or none).
struct One<'k>(Option<Probe<'k>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .take()
            .map(|probe| seed.deserialize(probe))
            .transpose()
    }
}

/// Every field of a table, each with a probe for its value.
struct Fields<'k> {
    probe: Probe<'k>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let name: StrDeserializer<Error> = field.into_deserializer();
        seed.deserialize(name).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        seed.deserialize(self.probe.child(field))
    }
}

/// `MEDIAGATE__SECTION__KEY`; keys of an array of tables have none.
fn env_var(key: &str) -> Option<String> {
    (!key.contains("[]")).then(|| format!("MEDIAGATE__{}", key.replace('.', "__").to_uppercase()))
}

/// The keys the example file names, commented out or not: `[section]` and `[[section]]`
/// headers (also after a `#`) open a section, `key = ...` lines (also after a `#`) name a key
/// in it.
fn example_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches('#').trim();
        if let Some(table) = line.strip_prefix("[[").and_then(|l| l.split_once("]]")) {
            section = format!("{}[]", table.0);
        } else if let Some(table) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            section = table.0.to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    keys
}

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_key_is_documented_and_in_the_example() {
    let keys = config_keys();
    // The walk reaches every kind of key: a plain one, an optional secret, an enum, a map, a
    // list of values, and a key of the `[[workflows]]` tables.
    for key in [
        "server.listen",
        "auth.jwt_secret",
        "storage.provider",
        "notifications.oss_pinned_keys",
        "server.cors_origins",
        "workflows[].webhook_secret",
    ] {
        assert!(keys.contains(key), "{key} not found in {keys:?}");
    }

    let doc = read("docs/configuration.md");
    let undocumented: Vec<_> = keys
        .iter()
        .filter(|key| {
            !doc.contains(&format!("`{key}`"))
                || env_var(key).is_some_and(|var| !doc.contains(&format!("`{var}`")))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/configuration.md lacks these keys (as `section.key`, with `MEDIAGATE__SECTION__KEY`): {undocumented:?}"
    );

    let example = example_keys(&read("config/mediagate.example.toml"));
    let absent: Vec<_> = keys.difference(&example).collect();
    assert!(
        absent.is_empty(),
        "config/mediagate.example.toml does not show these keys (a commented `key = ...` line in its section will do): {absent:?}"
    );
    let unknown: Vec<_> = example.difference(&keys).collect();
    assert!(
        unknown.is_empty(),
        "config/mediagate.example.toml names keys that do not exist: {unknown:?}"
    );
}

#[test]
fn the_example_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mediagate.example.toml");
    if let Err(e) = Config::load(Some(&path)) {
        panic!("config/mediagate.example.toml: {e}");
    }
}
