//! Properties of the parser and emitter over generated input (bounded, runs in seconds).

use bosh_yaml::{Mapping, Value};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        // Printable text with YAML's troublesome characters over-represented.
        "[ a-z0-9:#'\"\\-\\[\\]{}&*!|>%@`?,.~\\n\\t]{0,24}".prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Seq),
            prop::collection::vec(("[a-z_][a-z0-9_.]{0,8}", inner), 0..5).prop_map(|kvs| {
                Value::Map(
                    kvs.into_iter()
                        .map(|(k, v)| (Value::String(k), v))
                        .collect::<Mapping>(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn emitted_documents_parse_back_to_the_same_value(v in value()) {
        let text = bosh_yaml::to_string(&v);
        let back = bosh_yaml::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{text}")))?;
        prop_assert_eq!(&back, &v, "emitted:\n{}", text);
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,200}") {
        let _ = bosh_yaml::parse_marked(&s);
    }

    #[test]
    fn parser_never_panics_on_yamlish_text(s in "[-:\\[\\]{}&*!|>'\"#?, \\na-z0-9<]{0,120}") {
        let _ = bosh_yaml::parse_marked(&s);
    }
}
