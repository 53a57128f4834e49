//! Random documents, paths and placeholders: operations and interpolation never panic,
//! paths print back to themselves, and a successful replace at a plain key path is found
//! again at that path.

use bosh_interpolate::template::{EvaluateOpts, evaluate};
use bosh_interpolate::vars::StaticVariables;
use bosh_interpolate::{Op, Pointer, Token};
use bosh_yaml::{Mapping, Value};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..5).prop_map(Value::Int),
        prop::sample::select(vec!["a", "b", "name", "x", "((a))", "((b.c))", "p((a))s"])
            .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Seq),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["a", "b", "name", "x", "((a))"]),
                    inner
                ),
                0..4
            )
            .prop_map(|entries| {
                Value::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Value::from(k), v))
                        .collect::<Mapping>(),
                )
            }),
        ]
    })
}

fn path_text() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a",
        "b",
        "name",
        "x",
        "0",
        "1",
        "-1",
        "-",
        "name=a",
        "name=b?",
        "a?",
        "0:prev",
        "1:next:after",
        "0:before",
        "-1:after",
        "x:bad",
        "~1",
        "~0",
        "~7",
        "+1",
        "",
    ]);
    prop::collection::vec(segment, 0..5)
        .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect::<String>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn operations_never_panic(doc in value(), path in path_text(), v in value(), kind in 0u8..4) {
        if let Ok(pointer) = Pointer::parse(&path) {
            let op = match kind {
                0 => Op::Replace { path: pointer, value: v },
                1 => Op::Remove { path: pointer },
                2 => Op::Test { path: pointer, value: v, absent: false },
                _ => Op::Test { path: pointer, value: Value::Null, absent: true },
            };
            let _ = op.apply(doc.clone());
            let _ = Op::Described { op: Box::new(op), description: "d".into() }.apply(doc);
        }
    }

    #[test]
    fn paths_print_back_to_the_same_tokens(path in path_text()) {
        if let Ok(pointer) = Pointer::parse(&path) {
            let again = Pointer::parse(&pointer.to_string());
            prop_assert_eq!(again.as_ref().map(Pointer::tokens), Ok(pointer.tokens()));
        }
    }

    #[test]
    fn replace_then_find_at_key_paths(doc in value(), keys in prop::collection::vec(prop::sample::select(vec!["a", "b", "x"]), 1..4), v in value()) {
        let path = Pointer::from_tokens(
            keys.iter().map(|k| Token::Key { key: (*k).to_owned(), optional: false }).collect(),
        );
        if let Ok(out) = (Op::Replace { path: path.clone(), value: v.clone() }).apply(doc) {
            prop_assert_eq!(bosh_interpolate::patch::find(&out, &path), Ok(v));
        }
    }

    #[test]
    fn interpolation_never_panics(doc in value(), a in value()) {
        let mut vars = StaticVariables::default();
        vars.insert("a", a);
        let text = bosh_yaml::to_string(&doc);
        let _ = evaluate(&text, &vars, None, &EvaluateOpts { expect_all_keys: true, expect_all_vars_used: true, ..Default::default() });
    }
}
