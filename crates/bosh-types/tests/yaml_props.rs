//! No input makes the YAML parser or a model parser panic: arbitrary text, and real
//! documents with random edits (lines dropped or duplicated, characters changed).

use bosh_types::cloud_config::CloudConfig;
use bosh_types::cpi_config::CpiConfig;
use bosh_types::manifest::Manifest;
use bosh_types::runtime_config::RuntimeConfig;
use proptest::prelude::*;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(rel: &str) -> String {
    let path = format!(
        "{}/../../../shared/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn documents() -> Vec<String> {
    vec![
        data("manifest.yml"),
        data("cloud-config.yml"),
        data("runtime-config.yml"),
        data("cpi-config.yml"),
        fixture("interpolate/base.yml"),
    ]
}

/// Feeds `src` to every parser; a panic fails the property.
fn parse_everything(src: &str) {
    let _ = bosh_yaml::parse(src);
    if let Ok(m) = Manifest::parse(src)
        && let Ok(cc) = CloudConfig::parse(&data("cloud-config.yml"))
    {
        let _ = m.validate_against(&cc);
    }
    if let Ok(cc) = CloudConfig::parse(src) {
        let _ = CloudConfig::merge(vec![cc.clone(), cc]);
    }
    let _ = CloudConfig::parse_fragment(src);
    let _ = RuntimeConfig::parse(src);
    let _ = CpiConfig::parse(src);
}

#[derive(Debug, Clone)]
enum Edit {
    DropLine(usize),
    DuplicateLine(usize),
    /// Replace the value after the first ':' on a line.
    ReplaceValue(usize, String),
    ReplaceChar(usize, char),
}

fn apply(src: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_owned).collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        match edit {
            Edit::DropLine(i) => {
                lines.remove(i % lines.len());
            }
            Edit::DuplicateLine(i) => {
                let i = i % lines.len();
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            Edit::ReplaceValue(i, v) => {
                let i = i % lines.len();
                if let Some(colon) = lines[i].find(':') {
                    lines[i] = format!("{}: {v}", &lines[i][..colon]);
                }
            }
            Edit::ReplaceChar(i, c) => {
                let i = i % lines.len();
                let line: Vec<char> = lines[i].chars().collect();
                if !line.is_empty() {
                    let mut line = line;
                    let at = (i * 7) % line.len();
                    line[at] = *c;
                    lines[i] = line.into_iter().collect();
                }
            }
        }
    }
    lines.join("\n")
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("((placeholder))".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("~".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("::/0".to_owned()),
        Just("0.0.0.0/0".to_owned()),
        Just("10.0.0.0 - 10.255.255.255".to_owned()),
        Just("[::1 - ::ffff:ffff]".to_owned()),
        Just("10.0.0.1/33".to_owned()),
        Just("100%".to_owned()),
        Just("1-0".to_owned()),
        Just("yes".to_owned()),
        Just("[a, {b: c}]".to_owned()),
        "[a-z0-9 %./:-]{0,12}",
    ]
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), value_strategy()).prop_map(|(i, v)| Edit::ReplaceValue(i, v)),
        (
            any::<usize>(),
            prop_oneof![
                Just(' '),
                Just(':'),
                Just('-'),
                Just('['),
                Just('{'),
                Just('&'),
                Just('*'),
                any::<char>()
            ]
        )
            .prop_map(|(i, c)| Edit::ReplaceChar(i, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        parse_everything(&src);
    }

    #[test]
    fn yaml_shaped_text_never_panics(src in "([a-z_]{1,8}: ?(\\[|\\{|-|\\(\\(|[0-9a-z.%/ -]{0,10})\n {0,4}(- )?){0,12}") {
        parse_everything(&src);
    }

    #[test]
    fn mutated_real_documents_never_panic(
        doc in 0usize..5,
        edits in proptest::collection::vec(edit_strategy(), 1..6),
    ) {
        let docs = documents();
        parse_everything(&apply(&docs[doc], &edits));
    }
}
