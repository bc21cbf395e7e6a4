//! Checks JSON against the schemas of an OpenAPI document, strictly: objects refuse
//! properties their schema does not document.

use crate::helpers::{TestApp, sign};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// Components made strict: objects refuse undocumented properties. A schema used inside
/// `allOf` (serde `flatten`) is referenced through an open copy, and the `allOf` holder
/// refuses what none of its parts evaluated.
fn strict_components(doc: &Value) -> Value {
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut out = Map::new();
    for (name, s) in schemas {
        let mut strict = s.clone();
        tighten(&mut strict);
        out.insert(name.clone(), strict);
        out.insert(format!("{name}__open"), s.clone());
    }
    json!({"schemas": out})
}

fn tighten(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else {
        if let Some(items) = node.as_array_mut() {
            items.iter_mut().for_each(tighten);
        }
        return;
    };
    if let Some(Value::Array(parts)) = obj.get_mut("allOf") {
        for p in parts.iter_mut() {
            if let Some(Value::String(r)) = p.get_mut("$ref") {
                r.push_str("__open");
            }
        }
        obj.insert("unevaluatedProperties".into(), json!(false));
        return;
    }
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), json!(false));
    }
    for v in obj.values_mut() {
        tighten(v);
    }
}

pub struct Checker {
    pub doc: Value,
    pub components: Value,
    pub seen: BTreeSet<(String, String, u16)>,
}

impl Checker {
    pub fn new(doc: Value) -> Checker {
        let components = strict_components(&doc);
        Checker {
            doc,
            components,
            seen: BTreeSet::new(),
        }
    }

    pub fn check(&self, schema: &Value, instance: &Value, what: &str) {
        // An empty or missing schema would accept anything.
        assert!(
            schema.get("$ref").is_some() || schema.get("type").is_some(),
            "{what}: no schema documented"
        );
        let mut root = schema.clone();
        root["components"] = self.components.clone();
        let v = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not match its schema: {errors:?}\n{instance}"
        );
    }

    pub fn schema_ref(name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// Sends a request (signed with `key`, or badly signed with `None`), checks the body it
    /// sent and the answer against the document, and records the status.
    pub async fn call(
        &mut self,
        app: &TestApp,
        key: Option<(&str, &str)>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let text = body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        let (k, sig) = match key {
            Some((k, secret)) => (k.to_string(), sign(secret, text.as_bytes())),
            None => (app.creds.api_key.clone(), "00".repeat(64)),
        };
        let url = app.url(path);
        let req = if method == "get" {
            app.http.get(url)
        } else {
            app.http.post(url).body(text.clone())
        };
        let r = req
            .header("X-Processing-Key", k)
            .header("X-Processing-Signature", sig)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let answer: Value = r.json().await.unwrap();
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which is not documented: {answer}"
        );
        let schema = &documented["content"]["application/json"]["schema"];
        self.check(schema, &answer, &format!("{method} {path} {status}"));
        let req_schema = &op["requestBody"]["content"]["application/json"]["schema"];
        if let (200, Some(b), false) = (status, &body, req_schema.is_null()) {
            self.check(req_schema, b, &format!("request to {path}"));
        }
        self.seen.insert((method.into(), path.into(), status));
        (status, answer)
    }
}
