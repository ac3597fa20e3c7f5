// Caterva2 web GUI: small enhancements over server-rendered pages (everything works without them).
// Search as you type, the stack slider, drag and drop uploads, the command box, keyboard
// shortcuts, and polling /web/changes so that pages refresh when what they show changes.
"use strict";
(() => {
  const FRAGMENT = "X-C2-Fragment";
  const body = document.body;
  const base = body.dataset.base || "";
  body.classList.add("js");
  document.documentElement.classList.add("js");

  async function fragment(url, kind, options = {}) {
    const headers = Object.assign({ [FRAGMENT]: kind }, options.headers || {});
    const resp = await fetch(url, Object.assign({ credentials: "same-origin" }, options, { headers }));
    return { status: resp.status, html: await resp.text() };
  }

  // Search as you type: the server filters, the list is replaced, the URL keeps the query.
  function initSearch(root) {
    root.querySelectorAll("input[data-search]").forEach((input) => {
      const target = document.querySelector(input.dataset.search);
      let timer = 0;
      let shown = input.value;
      const run = async () => {
        const value = input.value;
        if (value === shown) return;
        const url = new URL(input.dataset.url, location.href);
        if (value) url.searchParams.set("q", value);
        const { html } = await fragment(url, "paths");
        if (input.value !== value) return; // the user typed on meanwhile
        shown = value;
        target.innerHTML = html;
        const page = new URL(location.href);
        if (value) page.searchParams.set("q", value);
        else page.searchParams.delete("q");
        history.replaceState(history.state, "", page);
      };
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(run, 150);
      });
      input.addEventListener("keydown", (e) => {
        if (e.key === "Escape" && input.value) {
          input.value = "";
          run();
        } else if (e.key === "ArrowDown") {
          const first = target.querySelector("a");
          if (first) {
            e.preventDefault();
            first.focus();
          }
        }
      });
      input.form.addEventListener("submit", (e) => {
        e.preventDefault();
        clearTimeout(timer);
        run();
      });
    });
  }

  // Arrow keys move between the entries of a path list.
  document.addEventListener("keydown", (e) => {
    const link = e.target.closest && e.target.closest(".paths a, .folders a");
    if (!link || (e.key !== "ArrowDown" && e.key !== "ArrowUp")) return;
    const list = link.closest("#paths") || link.parentNode.parentNode;
    const links = Array.from(list.querySelectorAll(".folders a, .paths a"));
    const i = links.indexOf(link) + (e.key === "ArrowDown" ? 1 : -1);
    e.preventDefault();
    if (i >= 0 && i < links.length) links[i].focus();
    else if (i < 0) document.getElementById("q")?.focus();
  });

  // The account menu closes with Escape or a click elsewhere.
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
  document.addEventListener("click", (e) => {
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      if (!menu.contains(e.target)) menu.open = false;
    });
  });

  // "/" focuses the search box, as on many sites.
  document.addEventListener("keydown", (e) => {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || e.target.isContentEditable) return;
    const q = document.getElementById("q");
    if (q) {
      e.preventDefault();
      q.focus();
      q.select();
    }
  });

  // The stack viewer: the slider swaps the PNG, prefetches neighbours and keeps the URL current.
  function initSliders(root) {
    root.querySelectorAll("input[type=range][data-image]").forEach((slider) => {
      const img = document.querySelector(slider.dataset.image);
      const label = document.querySelector(slider.dataset.label);
      const problem = document.getElementById("image-error");
      const axis = slider.dataset.axis;
      const srcFor = (i) => `${slider.dataset.src}?axis=${axis}&i=${i}&v=${slider.dataset.v}`;
      const cache = new Map();
      const prefetch = (i) => {
        if (i < Number(slider.min) || i > Number(slider.max) || cache.has(i)) return;
        const image = new Image();
        image.src = srcFor(i);
        cache.set(i, image);
      };
      let frame = 0;
      const show = () => {
        const i = Number(slider.value);
        img.src = srcFor(i);
        img.alt = img.alt.replace(/^Slice \d+/, `Slice ${i}`);
        if (label) label.textContent = String(i);
        slider.setAttribute("aria-valuetext", `slice ${i}`);
        const page = new URL(location.href);
        page.searchParams.set("view", "image");
        page.searchParams.set("axis", axis);
        page.searchParams.set("i", String(i));
        history.replaceState(history.state, "", page);
        prefetch(i + 1);
        prefetch(i - 1);
      };
      slider.addEventListener("input", () => {
        cancelAnimationFrame(frame);
        frame = requestAnimationFrame(show);
      });
      img.addEventListener("error", () => {
        if (problem) problem.textContent = `Slice ${slider.value} could not be drawn.`;
      });
      img.addEventListener("load", () => {
        if (problem) problem.textContent = "";
      });
      const select = slider.form.querySelector("select[name=axis]");
      if (select) {
        select.addEventListener("change", () => {
          slider.disabled = true; // a new axis starts at its middle slice
          slider.form.submit();
        });
      }
      prefetch(Number(slider.value) + 1);
      prefetch(Number(slider.value) - 1);
    });
  }

  // Uploads: dropping files on the upload box sends them at once.
  function initDrop(root) {
    root.querySelectorAll("form[data-dropzone]").forEach((form) => {
      const input = form.querySelector("input[type=file]");
      const status = form.querySelector(".status");
      const say = (text) => {
        if (status) status.textContent = text;
      };
      ["dragenter", "dragover"].forEach((type) =>
        form.addEventListener(type, (e) => {
          e.preventDefault();
          form.classList.add("dragging");
        }),
      );
      ["dragleave", "drop"].forEach((type) =>
        form.addEventListener(type, (e) => {
          e.preventDefault();
          form.classList.remove("dragging");
        }),
      );
      form.addEventListener("drop", (e) => {
        const files = e.dataTransfer && e.dataTransfer.files;
        if (!files || !files.length) return;
        input.files = files;
        say(`Uploading ${files.length} file${files.length > 1 ? "s" : ""}…`);
        form.classList.add("busy");
        form.requestSubmit();
      });
      input.addEventListener("change", () => {
        const names = Array.from(input.files).map((f) => f.name);
        say(names.length ? `Selected: ${names.join(", ")}` : "");
      });
      form.addEventListener("submit", () => {
        form.classList.add("busy");
        if (input.files.length) say(`Uploading ${input.files.length} file(s)…`);
      });
    });
  }
  // A file dropped anywhere else must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // The command box runs in place, with a history on the arrow keys.
  const HISTORY = "caterva2.commands";
  function initCommand(root) {
    root.querySelectorAll("form[data-command]").forEach((form) => {
      const line = form.querySelector("input[name=command]:not([type=hidden])");
      if (line) {
        let pos = -1;
        line.addEventListener("keydown", (e) => {
          if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
          const past = JSON.parse(localStorage.getItem(HISTORY) || "[]");
          if (!past.length) return;
          e.preventDefault();
          pos = Math.max(-1, Math.min(past.length - 1, pos + (e.key === "ArrowUp" ? 1 : -1)));
          line.value = pos < 0 ? "" : past[pos];
        });
      }
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const data = new URLSearchParams(new FormData(form));
        if (line && line.value.trim()) {
          const past = JSON.parse(localStorage.getItem(HISTORY) || "[]").filter((c) => c !== line.value);
          past.unshift(line.value);
          localStorage.setItem(HISTORY, JSON.stringify(past.slice(0, 50)));
        }
        const { html } = await fragment(form.action, "command", {
          method: "POST",
          body: data,
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
        });
        // Looked up only now: a live refresh may have replaced the page while we waited.
        const out = document.getElementById("command-output");
        const current = document.getElementById(line ? line.id : "command");
        out.innerHTML = html;
        initAll(out);
        if (current) current.value = "";
        const confirm = out.querySelector("#command-confirm");
        if (confirm) confirm.focus();
        else if (current) current.focus();
        checkChanges();
      });
    });
    root.querySelectorAll("[data-dismiss]").forEach((el) =>
      el.addEventListener("click", (e) => {
        e.preventDefault();
        document.getElementById("command-output").innerHTML = "";
        document.getElementById("command")?.focus();
      }),
    );
  }

  // Live pages: ask the server every few seconds whether what the page shows has changed
  // (a tiny request answered from file times or etags), and re-render the page if it has.
  let checking = false;
  async function checkChanges() {
    const page = document.getElementById("page");
    if (!page || page.dataset.watch === undefined || checking || document.hidden) return;
    checking = true;
    try {
      const url = new URL(`${base}/web/changes`, location.href);
      url.searchParams.set("path", page.dataset.watch);
      const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      const { stamp } = await resp.json();
      if (stamp !== page.dataset.stamp) await refresh();
    } catch (err) {
      // The server may be restarting: try again on the next tick.
    } finally {
      checking = false;
    }
  }

  async function refresh() {
    const main = document.getElementById("main");
    const { html } = await fragment(location.href, "main");
    const typed = {};
    main.querySelectorAll("input[id], select[id], textarea[id]").forEach((el) => {
      if (el.type === "hidden" || el.type === "file" || el.type === "checkbox") return;
      if (el.value !== el.defaultValue) typed[el.id] = el.value;
    });
    const kept = {};
    main.querySelectorAll("[data-keep][id]").forEach((el) => (kept[el.id] = el.innerHTML));
    const focused = document.activeElement && document.activeElement.id;
    const scroll = window.scrollY;
    main.innerHTML = html;
    for (const [id, value] of Object.entries(typed)) {
      const el = document.getElementById(id);
      if (el) el.value = value;
    }
    for (const [id, inner] of Object.entries(kept)) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = inner;
    }
    const page = document.getElementById("page");
    if (page && page.dataset.title) document.title = page.dataset.title;
    initAll(main);
    if (focused) document.getElementById(focused)?.focus({ preventScroll: true });
    window.scrollTo(0, scroll);
    body.dispatchEvent(new CustomEvent("c2:refreshed"));
  }

  function initAll(root) {
    initSearch(root);
    initSliders(root);
    initDrop(root);
    initCommand(root);
  }

  initAll(document);
  const period = Number(body.dataset.poll) || 3000;
  setInterval(checkChanges, period);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) checkChanges();
  });
  window.caterva2 = { checkChanges, refresh };
})();
