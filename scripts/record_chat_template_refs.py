#!/usr/bin/env python3
"""Records reference renderings of chat templates (tests/tests/chat_template.rs).

The reference renderer is Python's jinja2 (pinned below), set up as transformers'
`apply_chat_template` sets it up: trim_blocks and lstrip_blocks on, the loopcontrols
extension, a `tojson` that is `json.dumps(x, ensure_ascii=False)`, `raise_exception(msg)` and
`strftime_now(fmt)` (here on a fixed date, DATE, so the output is reproducible; the Rust side
fixes the same date with `ChatTemplate::set_date`). Variables: messages,
add_generation_prompt, bos_token, eos_token and tools=None.

Templates: real ones where a registry package ships them, the llama-cpp-python 0.3.36 sdist
(`pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`): its vendored llama.cpp
`models/templates/*.jinja` (copied from each model's tokenizer_config.json) and the template
constants in `llama_cpp/llama_chat_format.py`. Gemma 3, SmolLM2 and TinyLlama/Zephyr are not
shipped there; they are written below in those models' published format.

    python3 -m venv /tmp/jinja-env && /tmp/jinja-env/bin/pip install jinja2==3.1.6 markupsafe==3.0.3
    /tmp/jinja-env/bin/python scripts/record_chat_template_refs.py [--sdist PATH] [--out FILE]

--sdist: the sdist .tar.gz or its unpacked folder (downloaded with pip when left out).
Writes tests/data/chat_templates/refs.json; reruns write identical files.
"""

import argparse
import ast
import datetime
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

JINJA2_VERSION = "3.1.6"
SDIST = "llama-cpp-python==0.3.36"
DATE = datetime.datetime(2025, 3, 9, 0, 0, 0)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "chat_templates", "refs.json")

# name -> (file in the sdist's vendor/llama.cpp/models/templates, bos, eos)
SDIST_FILES = {
    "llama3.1": ("meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>"),
    "phi3.5": ("microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>"),
    "gemma2": ("google-gemma-2-2b-it.jinja", "<bos>", "<eos>"),
    "mistral-nemo": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
}
# name -> (constant in llama_cpp/llama_chat_format.py, bos, eos)
SDIST_CONSTANTS = {
    "llama3": ("LLAMA3_INSTRUCT_CHAT_TEMPLATE", "<|begin_of_text|>", "<|eot_id|>"),
    "chatml": ("CHATML_CHAT_TEMPLATE", "", "<|im_end|>"),
    "mistral-instruct": ("MISTRAL_INSTRUCT_CHAT_TEMPLATE", "<s>", "</s>"),
}

# Written in the published format of models whose templates no package here ships.
GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

# Not a model's: the Jinja features and Python methods templates lean on, in one place.
FEATURES = """{{ messages | tojson }}
{{ messages[:1] | tojson(indent=2) }}
{% set ns = namespace(n=0, roles='') %}
{% for message in messages[::-1] %}
{% if message.role == 'tool' %}{% continue %}{% endif %}
{% if loop.index > 4 %}{% break %}{% endif %}
{% set ns.n = ns.n + 1 %}{% set ns.roles = ns.roles + message['role'][0] %}
{{ loop.index0 }}:{{ message.role.upper() }}:{{ message.content.strip().split(' ')[0] }}|{{ message.content.lstrip().rstrip('.? ') }}|{{ message.content.replace('a', 'A') }}|{{ message.content.startswith('W') }}{{ message.content.endswith('?') }}|{{ message.role.title() }}|{{ message.get('role') }}|{{ message.get('missing', 'none') }}
{% endfor %}
{% for k, v in messages[0].items() %}{{ k }}={{ v | trim | length }};{% endfor %}
{{ ns.n }} {{ ns.roles }} {{ messages[1:] | length }} {{ (messages | last).content | trim }} {{ strftime_now('%A %d %B %Y %j') }}
{% if add_generation_prompt %}{{ bos_token ~ '|' ~ eos_token }}{% endif %}
"""

WRITTEN = {
    "features": (FEATURES, "<s>", "</s>"),
    "gemma3": (GEMMA3, "<bos>", "<eos>"),
    "smollm2": (SMOLLM2, "", "<|im_end|>"),
    "tinyllama-zephyr": (ZEPHYR, "<s>", "</s>"),
}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "user": [m("user", "Write a short poem about the sea.")],
    "system_user": [m("system", "You are a helpful assistant."), m("user", "Hello!")],
    "multi_turn": [
        m("system", " You are terse.\n"),
        m("user", "What is 2+2?"),
        m("assistant", "4"),
        m("user", "And 3+3?"),
    ],
    "multi_turn_no_system": [
        m("user", "  What is 2+2?  "),
        m("assistant", "4"),
        m("user", "And 3+3?"),
    ],
    "ends_with_assistant": [m("user", "\tHi\n\n"), m("assistant", " Hello! ")],
    "unicode_whitespace": [
        m("user", "  Привет 👋 — ¿qué tal?\n\n"),
        m("assistant", " 你好。\t"),
        m("user", "tabs\tand\nnewlines  {{ not a tag }} <b>&'\"</b>"),
    ],
    "thinking": [
        m("user", "Is 7 prime?"),
        m("assistant", "<think>\nIt has no divisors but 1 and 7.\n</think>\n\nYes."),
        m("user", "And 9?"),
    ],
    "bad_order": [m("assistant", "Hi."), m("user", "Hello")],
    "tool_role": [m("user", "What is 6*7?"), m("assistant", "Calling the calculator."), m("tool", "42")],
    "empty": [],
}


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return DATE.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def sdist_root(arg):
    if arg and os.path.isdir(arg):
        return arg
    if not arg:
        tmp = tempfile.mkdtemp()
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", tmp, SDIST],
            check=True,
        )
        arg = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".tar.gz"))
    out = tempfile.mkdtemp()
    with tarfile.open(arg) as t:
        want = [
            x
            for x in t.getmembers()
            if x.name.endswith("llama_cpp/llama_chat_format.py") or "/models/templates/" in x.name
        ]
        t.extractall(out, members=want, filter="data")
    (top,) = os.listdir(out)
    return os.path.join(out, top)


def constants(path):
    """String constants of a Python file, read without importing it (it needs llama_cpp)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                out[node.targets[0].id] = node.value.value
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist")
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args()
    if jinja2.__version__ != JINJA2_VERSION:
        sys.exit(f"jinja2 {jinja2.__version__} found, {JINJA2_VERSION} expected (see the docstring)")

    root = sdist_root(a.sdist)
    templates = {}
    for name, (f, bos, eos) in SDIST_FILES.items():
        rel = f"vendor/llama.cpp/models/templates/{f}"
        with open(os.path.join(root, rel), encoding="utf-8") as fh:
            templates[name] = {"source": fh.read(), "from": f"{SDIST} sdist: {rel}", "bos": bos, "eos": eos}
    consts = constants(os.path.join(root, "llama_cpp", "llama_chat_format.py"))
    for name, (c, bos, eos) in SDIST_CONSTANTS.items():
        templates[name] = {"source": consts[c], "from": f"{SDIST} sdist: llama_cpp/llama_chat_format.py {c}", "bos": bos, "eos": eos}
    for name, (src, bos, eos) in WRITTEN.items():
        templates[name] = {"source": src, "from": "written in the model's published format", "bos": bos, "eos": eos}

    env = environment()
    cases = []
    for tname in sorted(templates):
        t = templates[tname]
        tmpl = env.from_string(t["source"])
        for cname, msgs in CONVERSATIONS.items():
            for gen in (True, False):
                case = {"template": tname, "conversation": cname, "add_generation_prompt": gen}
                try:
                    case["expected"] = tmpl.render(
                        messages=msgs, add_generation_prompt=gen, bos_token=t["bos"], eos_token=t["eos"], tools=None
                    )
                except jinja2.exceptions.TemplateError as e:
                    # raise_exception raises the base class; jinja2's own errors are subclasses.
                    kind = "raised" if type(e) is jinja2.exceptions.TemplateError else "other"
                    case["error"] = {"kind": kind, "type": type(e).__name__, "message": str(e)}
                cases.append(case)

    out = {
        "generator": "scripts/record_chat_template_refs.py",
        "jinja2": jinja2.__version__,
        "date": DATE.strftime("%Y-%m-%d"),
        "conversations": CONVERSATIONS,
        "templates": templates,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    n_err = sum("error" in c for c in cases)
    print(f"{len(templates)} templates, {len(cases)} cases ({n_err} errors) -> {a.out}")


if __name__ == "__main__":
    main()
