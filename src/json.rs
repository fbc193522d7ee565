//! JSON request values as JSON Schema reads them, so a body the OpenAPI document allows is one
//! the server parses: an `integer` is any number without a fractional part, `7.0` included,
//! where serde alone would only take `7`.

use serde::{Deserialize, Deserializer, de::Error};

/// An optional whole number of type `T`; `null` or an absent field is `None`.
pub fn integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let out_of_range = || D::Error::custom(format!("{number} is out of range"));
    if let Some(n) = number.as_u64() {
        return T::try_from(n).map(Some).map_err(|_| out_of_range());
    }
    if let Some(n) = number.as_i64() {
        return T::try_from(n).map(Some).map_err(|_| out_of_range());
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    if float.fract() != 0.0 {
        return Err(D::Error::custom(format!("{number} is not a whole number")));
    }
    // Whole floats within u64 or i64 convert exactly; anything beyond is out of range.
    if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
        T::try_from(float as u64)
            .map(Some)
            .map_err(|_| out_of_range())
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&float) {
        T::try_from(float as i64)
            .map(Some)
            .map_err(|_| out_of_range())
    } else {
        Err(out_of_range())
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "super::integer")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::integer")]
        i: Option<i64>,
    }

    fn parse(text: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn whole_numbers_in_any_notation() {
        assert_eq!(parse(r#"{"n": 7}"#).unwrap().n, Some(7));
        assert_eq!(parse(r#"{"n": 7.0}"#).unwrap().n, Some(7));
        assert_eq!(parse(r#"{"n": 1e3}"#).unwrap().n, Some(1000));
        assert_eq!(parse(r#"{"i": -2.0}"#).unwrap().i, Some(-2));
        assert_eq!(parse(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(parse(r#"{}"#).unwrap().n, None);
        assert_eq!(
            parse(r#"{"i": 18446744073709551615}"#).map(|b| b.i).ok(),
            None
        );
        for refused in [
            r#"{"n": 7.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 1e30}"#,
            r#"{"n": "7"}"#,
            r#"{"i": 1e19}"#,
        ] {
            assert!(parse(refused).is_err(), "{refused}");
        }
    }
}
