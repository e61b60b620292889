//! Closed sets of names (`models.backend`, `decoder.method`, …) as enums.
//!
//! One definition gives the config and the command line the same parser: serde goes through
//! `FromStr`, and clap picks `FromStr` up by itself, so a name is spelt, listed and refused in
//! one place, with one message (`"magic" is not one of argmax, offset, pdc, soft-argmax`).

/// Define a `Copy` enum whose variants are written as the given names (kebab-case by house
/// rule), with `NAMES`, `as_str`, `Display`, `FromStr` and serde through them.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every name, in declaration order.
            $vis const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name as written in configs and on the command line.
            $vis fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                match s {
                    $( $text => Ok(Self::$variant), )+
                    other => Err(format!("{other:?} is not one of {}", Self::NAMES.join(", "))),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use choice;

#[cfg(test)]
mod tests {
    choice! {
        enum Colour {
            Red = "red",
            DarkBlue = "dark-blue",
        }
    }

    #[test]
    fn names_parse_print_and_refuse_alike_in_yaml_and_text() {
        assert_eq!("dark-blue".parse::<Colour>(), Ok(Colour::DarkBlue));
        assert_eq!(Colour::Red.to_string(), "red");
        assert_eq!(Colour::NAMES, &["red", "dark-blue"]);
        let e = "green".parse::<Colour>().unwrap_err();
        assert_eq!(e, "\"green\" is not one of red, dark-blue");
        let v: Colour = serde_yaml::from_str("dark-blue").unwrap();
        assert_eq!(v, Colour::DarkBlue);
        assert_eq!(serde_yaml::to_string(&Colour::Red).unwrap().trim(), "red");
        let e = serde_yaml::from_str::<Colour>("green").unwrap_err().to_string();
        assert!(e.contains("\"green\" is not one of red, dark-blue"), "{e}");
        // Not a string at all: serde's own type error.
        assert!(serde_yaml::from_str::<Colour>("[1]").is_err());
    }
}
