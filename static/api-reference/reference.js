// Renders /api/v2/openapi.json as a readable reference. Builds DOM nodes with textContent only
// (never innerHTML), so nothing in the document can inject markup. No third-party code.
"use strict";

(function () {
  const METHODS = ["get", "post", "put", "patch", "delete"];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  // Appends the children that exist.
  function add(parent, ...children) {
    for (const c of children.flat(Infinity)) {
      if (c) parent.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return parent;
  }

  // Text with `code` spans, as the descriptions use them.
  function prose(text) {
    const p = el("p", { class: "prose" });
    String(text || "").split("`").forEach((part, i) => {
      p.appendChild(i % 2 ? el("code", {}, part) : document.createTextNode(part));
    });
    return p;
  }

  function anchor(kind, name) {
    return kind + "-" + String(name).replace(/[^A-Za-z0-9_-]+/g, "-");
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function typeLabel(schema) {
    if (!schema) return "any";
    if (schema.$ref) {
      const name = refName(schema.$ref);
      return el("a", { href: "#" + anchor("schema", name) }, name);
    }
    if (schema.oneOf || schema.anyOf) {
      const parts = schema.oneOf || schema.anyOf;
      const span = el("span");
      parts.forEach((s, i) => {
        if (i) span.appendChild(document.createTextNode(" | "));
        const t = typeLabel(s);
        span.appendChild(typeof t === "string" ? document.createTextNode(t) : t);
      });
      return span;
    }
    if (schema.allOf) return typeLabel(schema.allOf[0]);
    let t = schema.type;
    if (Array.isArray(t)) t = t.join(" | ");
    if (t === "array" || (Array.isArray(schema.type) && schema.type.includes("array"))) {
      const inner = typeLabel(schema.items);
      const span = el("span", {}, "array of ");
      span.appendChild(typeof inner === "string" ? document.createTextNode(inner) : inner);
      return span;
    }
    if (schema.enum) return (t ? t + ": " : "") + schema.enum.map((v) => JSON.stringify(v)).join(", ");
    if (t === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
      const inner = typeLabel(schema.additionalProperties);
      const span = el("span", {}, "map of string to ");
      span.appendChild(typeof inner === "string" ? document.createTextNode(inner) : inner);
      return span;
    }
    return t || "any";
  }

  function fieldsTable(schema) {
    const props = schema && schema.properties;
    if (!props) return null;
    const required = new Set(schema.required || []);
    const rows = Object.entries(props).map(([name, s]) => {
      const t = typeLabel(s);
      return el("tr", {},
        el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "req", title: "required" }, " *") : null),
        el("td", {}, typeof t === "string" ? el("span", {}, t) : t),
        el("td", {}, s.description ? prose(s.description) : ""));
    });
    return el("table", { class: "fields" },
      el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description"))),
      el("tbody", {}, rows));
  }

  function schemaBlock(schema, doc) {
    if (!schema) return null;
    const box = el("div", { class: "schema" });
    const t = typeLabel(schema);
    box.appendChild(el("div", { class: "type" }, "Schema: ", typeof t === "string" ? el("span", {}, t) : t));
    const resolved = schema.$ref ? doc.components.schemas[refName(schema.$ref)] : schema;
    return add(box, fieldsTable(resolved));
  }

  function example(value) {
    if (value === undefined) return null;
    return el("details", { class: "example" }, el("summary", {}, "Example"),
      el("pre", {}, JSON.stringify(value, null, 2)));
  }

  function exampleOf(media, doc) {
    if (!media) return undefined;
    if (media.example !== undefined) return media.example;
    const s = media.schema;
    if (s && s.$ref) {
      const target = doc.components.schemas[refName(s.$ref)];
      if (target && target.example !== undefined) return target.example;
    }
    return undefined;
  }

  function operation(method, path, op, doc) {
    const id = anchor("op", op.operationId || method + path);
    const sec = el("section", { class: "op", id });
    sec.appendChild(el("h3", {}, el("span", { class: "method " + method }, method.toUpperCase()), " ", el("code", {}, path)));
    if (op.summary) sec.appendChild(el("p", { class: "summary" }, op.summary));
    if (op.description) op.description.split("\n\n").forEach((para) => sec.appendChild(prose(para)));
    if (op.security && op.security.length) {
      sec.appendChild(el("p", { class: "auth" }, "Signed: ",
        Object.keys(op.security[0]).map((k, i) => [i ? " + " : "", el("a", { href: "#auth" }, k)])));
    }
    const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (body) {
      sec.appendChild(el("h4", {}, "Request body"));
      add(sec, schemaBlock(body.schema, doc), example(exampleOf(body, doc)));
    }
    sec.appendChild(el("h4", {}, "Responses"));
    for (const [code, resp] of Object.entries(op.responses || {})) {
      const media = resp.content && resp.content["application/json"];
      const r = el("div", { class: "response" },
        el("div", { class: "code c" + String(code)[0] }, code),
        el("div", { class: "body" },
          resp.description ? prose(resp.description) : null,
          media ? schemaBlock(media.schema, doc) : null,
          media ? example(exampleOf(media, doc)) : null));
      sec.appendChild(r);
    }
    return sec;
  }

  function render(doc) {
    const content = document.getElementById("content");
    const toc = document.getElementById("toc");
    content.textContent = "";
    document.getElementById("title").textContent = doc.info.title + " " + (doc.info.version || "");
    content.appendChild(el("section", { id: "intro" }, prose(doc.info.description)));

    const schemes = (doc.components && doc.components.securitySchemes) || {};
    const auth = el("section", { id: "auth" }, el("h2", {}, "Authentication"));
    for (const [name, s] of Object.entries(schemes)) {
      const line = prose(s.description || "");
      line.insertBefore(el("span", {}, el("strong", {}, name), ": header ", el("code", {}, s.name || ""), ". "), line.firstChild);
      auth.appendChild(line);
    }
    content.appendChild(auth);

    const byTag = new Map((doc.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const m of METHODS) {
        if (!item[m]) continue;
        const tag = (item[m].tags && item[m].tags[0]) || "Other";
        if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
        byTag.get(tag).ops.push([m, path, item[m]]);
      }
    }
    const list = el("ul");
    list.appendChild(el("li", {}, el("a", { href: "#auth" }, "Authentication")));
    for (const { tag, ops } of byTag.values()) {
      if (!ops.length) continue;
      const sec = el("section", { id: anchor("tag", tag.name) }, el("h2", {}, tag.name));
      if (tag.description) sec.appendChild(prose(tag.description));
      const sub = el("ul");
      for (const [m, path, op] of ops) {
        sec.appendChild(operation(m, path, op, doc));
        sub.appendChild(el("li", {}, el("a", { href: "#" + anchor("op", op.operationId || m + path) }, m.toUpperCase() + " " + path.replace("/api/v2", ""))));
      }
      content.appendChild(sec);
      list.appendChild(el("li", {}, el("a", { href: "#" + anchor("tag", tag.name) }, tag.name), sub));
    }

    if (doc.webhooks) {
      const sec = el("section", { id: "webhooks" }, el("h2", {}, "Callbacks"));
      for (const [name, item] of Object.entries(doc.webhooks)) {
        for (const m of METHODS) if (item[m]) sec.appendChild(operation(m, name, item[m], doc));
      }
      content.appendChild(sec);
      list.appendChild(el("li", {}, el("a", { href: "#webhooks" }, "Callbacks")));
    }

    const schemas = el("section", { id: "schemas" }, el("h2", {}, "Schemas"));
    const names = Object.keys((doc.components && doc.components.schemas) || {}).sort();
    for (const name of names) {
      const s = doc.components.schemas[name];
      const box = el("section", { class: "schema-def", id: anchor("schema", name) }, el("h3", {}, name));
      if (s.description) box.appendChild(prose(s.description));
      const t = typeLabel(s);
      if (!s.properties) box.appendChild(el("div", { class: "type" }, typeof t === "string" ? el("span", {}, t) : t));
      add(box, fieldsTable(s), example(s.example));
      schemas.appendChild(box);
    }
    content.appendChild(schemas);
    list.appendChild(el("li", {}, el("a", { href: "#schemas" }, "Schemas")));
    toc.textContent = "";
    toc.appendChild(list);
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  fetch("/api/v2/openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then(render)
    .catch((e) => {
      const content = document.getElementById("content");
      content.textContent = "";
      content.appendChild(el("p", { id: "status" }, "Could not show the document: " + e.message));
      console.error(e);
    });
})();
