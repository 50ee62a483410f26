// The recforge web page: choose a user or liked titles, show recommendations and live metrics.
"use strict";

const $ = (id) => document.getElementById(id);
const liked = new Map(); // item id -> title

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.detail && body.detail.message) || response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadUsers() {
  const users = await getJSON("/users?limit=200");
  for (const user of users) {
    const option = element("option", "", `user ${user.id}`);
    option.value = user.id;
    $("user-select").appendChild(option);
  }
}

function showLiked() {
  $("liked").replaceChildren(...[...liked].map(([id, title]) => {
    const li = element("li", "", title || id);
    li.title = "click to remove";
    li.onclick = () => { liked.delete(id); showLiked(); };
    return li;
  }));
}

let searchTimer = null;
function searchTitles() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $("title-search").value.trim();
    if (!q) { $("title-matches").replaceChildren(); return; }
    const found = await getJSON(`/items?limit=8&q=${encodeURIComponent(q)}`);
    $("title-matches").replaceChildren(...found.map((item) => {
      const li = element("li", "", item.title || item.id);
      li.onclick = () => { liked.set(item.id, item.title); showLiked(); };
      return li;
    }));
  }, 200);
}

async function recommend() {
  $("error").textContent = "";
  const user = $("user-select").value;
  const body = { k: Number($("k").value) || 10, history: [...liked.keys()] };
  if (user) body.user_id = user;
  try {
    const answer = await getJSON("/recommend", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    $("version").textContent = answer.model_version;
    $("arm").textContent = answer.arm;
    $("summary").textContent = `${answer.items.length} items for ` +
      (user ? `user ${user}` : `${liked.size} liked titles`) + ` (${answer.source})`;
    $("results").replaceChildren(...answer.items.map((item) => {
      const li = element("li", "item");
      li.dataset.id = item.id;
      li.append(element("span", "title", item.title || item.id),
                element("span", "score", item.score.toFixed(3)),
                element("div", "genres", item.genres.join(", ")));
      return li;
    }));
    refreshMetrics();
  } catch (error) {
    $("error").textContent = error.message;
  }
}

const SHOWN = {
  recforge_list_diversity: "list diversity",
  recforge_catalogue_coverage: "catalogue coverage",
  recforge_item_age_days: "item age (days)",
  recforge_popularity_bias: "popularity bias",
  recforge_event_lag_seconds: "event lag (s)",
};

async function refreshMetrics() {
  const response = await fetch("/metrics");
  if (!response.ok) return;
  const text = await response.text();
  const values = {};
  let requests = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.trim()) continue;
    const [name, value] = [line.slice(0, line.lastIndexOf(" ")), Number(line.slice(line.lastIndexOf(" ") + 1))];
    if (name.startsWith("recforge_requests_total{")) requests += value;
    const bare = name.split("{")[0];
    if (bare in SHOWN) values[SHOWN[bare]] = value;
  }
  const rows = [["requests", requests], ...Object.entries(values)];
  $("metrics").replaceChildren(...rows.flatMap(([label, value]) => [
    element("dt", "", label),
    element("dd", "", Number.isInteger(value) ? String(value) : value.toFixed(3)),
  ]));
}

async function showVersion() {
  const models = await getJSON("/models");
  $("version").textContent = models.active;
}

$("title-search").addEventListener("input", searchTitles);
$("recommend-btn").addEventListener("click", recommend);
loadUsers().catch((error) => { $("error").textContent = error.message; });
showVersion().catch(() => {});
refreshMetrics();
setInterval(refreshMetrics, 3000);
