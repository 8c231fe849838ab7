//! Chat templates rendered by the engine (minijinja) against Python's jinja2 set up as
//! transformers sets it up (tests/data/chat_templates/refs.json, written by
//! scripts/record_chat_template_refs.py): real templates of Llama 3/3.1/3.2, Qwen2.5, Qwen3,
//! Phi-3.5, Gemma 2, Mistral and ChatML from llama-cpp-python's sdist, and Gemma 3, SmolLM2 and
//! TinyLlama/Zephyr written in their published format, on multi-turn, system, generation-prompt
//! and refused conversations. Also: syntax errors, `raise_exception`, a model without a template.

use std::collections::BTreeMap;

use webjit_engine::chat::{ChatMessage, ChatTemplate, Date, TemplateError, GGUF_KEY};
use webjit_engine::error::Error;
use webjit_engine::loader::{MetaEntry, MetaValue, ValueType};
use webjit_tests::gemma_refs::read_json;

fn refs() -> serde_json::Value {
    read_json("chat_templates/refs.json")
}

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).expect("messages")
}

/// Every template of the reference file, parsed, with the recording's fixed date.
fn templates(r: &serde_json::Value) -> BTreeMap<String, (ChatTemplate, String, String)> {
    let date = r["date"].as_str().expect("date");
    let ymd: Vec<u32> = date.split('-').map(|p| p.parse().expect("date")).collect();
    let mut out = BTreeMap::new();
    for (name, t) in r["templates"].as_object().expect("templates") {
        let mut tmpl = ChatTemplate::new(t["source"].as_str().expect("source"))
            .unwrap_or_else(|e| panic!("template {name}: {e}"));
        tmpl.set_date(Date::ymd(ymd[0] as i64, ymd[1], ymd[2]));
        let s = |k: &str| t[k].as_str().expect(k).to_string();
        out.insert(name.clone(), (tmpl, s("bos"), s("eos")));
    }
    out
}

#[test]
fn renders_like_jinja2_for_every_recorded_case() {
    let r = refs();
    let tmpls = templates(&r);
    let convs = &r["conversations"];
    let cases = r["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for c in cases {
        let name = c["template"].as_str().expect("template");
        let conv = c["conversation"].as_str().expect("conversation");
        let gen = c["add_generation_prompt"]
            .as_bool()
            .expect("add_generation_prompt");
        let (t, bos, eos) = &tmpls[name];
        let got = t.render(&messages(&convs[conv]), gen, bos, eos);
        let what = format!("{name} / {conv} / add_generation_prompt={gen}");
        match (&c["expected"], &c["error"], got) {
            (serde_json::Value::String(want), _, Ok(text)) if *want == text => {}
            (serde_json::Value::String(want), _, got) => {
                failures.push(format!("{what}:\n  jinja2: {want:?}\n  ours:   {got:?}"))
            }
            (_, err, got) => {
                let kind = err["kind"].as_str().expect("error kind");
                let msg = err["message"].as_str().expect("error message");
                match (kind, got) {
                    ("raised", Err(TemplateError::Raised { message })) if message == msg => {}
                    ("other", Err(TemplateError::Render { .. })) => {}
                    (_, got) => failures.push(format!(
                        "{what}: jinja2 failed ({kind}: {msg}), ours gave {got:?}"
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The reference set covers each family with rendered prompts, with and without the
/// generation prompt, and refusals through `raise_exception`.
#[test]
fn reference_set_covers_every_family() {
    let r = refs();
    let cases = r["cases"].as_array().expect("cases");
    for family in [
        "llama3",
        "llama3.1",
        "llama3.2",
        "qwen2.5",
        "qwen3",
        "smollm2",
        "chatml",
        "phi3.5",
        "gemma2",
        "gemma3",
        "mistral-instruct",
        "mistral-nemo",
        "tinyllama-zephyr",
        "features",
    ] {
        for gen in [true, false] {
            let n = cases
                .iter()
                .filter(|c| c["template"] == family && c["add_generation_prompt"] == gen)
                .filter(|c| c["expected"].is_string())
                .count();
            assert!(
                n >= 4,
                "{family} add_generation_prompt={gen}: {n} rendered cases"
            );
        }
    }
    let raised = cases.iter().filter(|c| c["error"]["kind"] == "raised");
    let families: std::collections::BTreeSet<&str> =
        raised.map(|c| c["template"].as_str().unwrap()).collect();
    for f in ["gemma2", "gemma3", "mistral-instruct"] {
        assert!(families.contains(f), "no raise_exception case for {f}");
    }
}

#[test]
fn syntax_errors_name_the_line_and_cause() {
    let src = "{{ bos_token }}\n{% for m in messages %}\n{{ m.content }\n{% endfor %}";
    match ChatTemplate::new(src) {
        Err(TemplateError::Syntax { line, detail }) => {
            assert_eq!(line, Some(3), "{detail}");
            assert!(detail.contains("syntax error"), "{detail}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let e = ChatTemplate::new("{% if x %}never closed").unwrap_err();
    assert!(matches!(e, TemplateError::Syntax { .. }), "{e}");
    assert!(e.to_string().contains("does not parse"), "{e}");
}

#[test]
fn raise_exception_becomes_a_typed_error_with_its_message() {
    let t = ChatTemplate::new(
        "{% for m in messages %}{% if m.role == 'robot' %}{{ raise_exception('no robots: ' ~ m.content) }}{% endif %}{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let ok = t.render(&[ChatMessage::new("user", "hi")], true, "", "");
    assert_eq!(ok.unwrap(), "hi");
    let e = t
        .render(&[ChatMessage::new("robot", "beep")], true, "", "")
        .unwrap_err();
    assert_eq!(
        e,
        TemplateError::Raised {
            message: "no robots: beep".into()
        }
    );
    let e = Error::from(e);
    assert_eq!(e.code(), "CHAT_TEMPLATE");
    assert!(e.to_string().contains("no robots: beep"), "{e}");
}

#[test]
fn render_errors_are_typed() {
    // An attribute of an undefined value, as jinja2's UndefinedError.
    let t = ChatTemplate::new("line one\n{{ nothing.here }}").unwrap();
    match t.render(&[], false, "", "") {
        Err(TemplateError::Render { line, .. }) => assert_eq!(line, Some(2)),
        other => panic!("expected a render error, got {other:?}"),
    }
    // An unknown strftime directive.
    let t = ChatTemplate::new("{{ strftime_now('%Q') }}").unwrap();
    let e = t.render(&[], false, "", "").unwrap_err();
    assert!(e.to_string().contains("%Q"), "{e}");
}

fn meta(key: &str, value: MetaValue) -> MetaEntry {
    MetaEntry {
        key: key.into(),
        ty: ValueType::Str,
        value,
    }
}

#[test]
fn the_gguf_template_is_used_and_a_missing_one_is_a_clear_error() {
    let src = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    let with = vec![
        meta("general.architecture", MetaValue::Str("llama".into())),
        meta(GGUF_KEY, MetaValue::Str(src.into())),
    ];
    let t = ChatTemplate::from_gguf(&with).unwrap().expect("template");
    assert_eq!(t.source(), src);
    let msgs = [ChatMessage::new("user", "a"), ChatMessage::new("tool", "b")];
    assert_eq!(t.render(&msgs, true, "", "").unwrap(), "<user>a<tool>b");
    // The caller's template wins over the GGUF's.
    let c = ChatTemplate::resolve(&with, Some("{{ messages | length }}")).unwrap();
    assert_eq!(c.render(&msgs, true, "", "").unwrap(), "2");

    let without = vec![meta("general.architecture", MetaValue::Str("llama".into()))];
    assert!(ChatTemplate::from_gguf(&without).unwrap().is_none());
    let e = ChatTemplate::resolve(&without, None).unwrap_err();
    assert_eq!(e, TemplateError::Missing);
    let msg = e.to_string();
    assert!(
        msg.contains(GGUF_KEY) && msg.contains("template string"),
        "{msg}"
    );
    assert_eq!(Error::from(e).code(), "CHAT_TEMPLATE");

    let wrong = vec![meta(GGUF_KEY, MetaValue::Uint(3))];
    assert!(matches!(
        ChatTemplate::from_gguf(&wrong),
        Err(TemplateError::NotAString { .. })
    ));
    let broken = vec![meta(GGUF_KEY, MetaValue::Str("{% for %}".into()))];
    assert!(matches!(
        ChatTemplate::from_gguf(&broken),
        Err(TemplateError::Syntax { .. })
    ));
}
