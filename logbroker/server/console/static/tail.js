// Live tail: new records arrive as server-sent events and are added on top of the table.
(function () {
  var button = document.getElementById("tail-toggle");
  var rows = document.getElementById("record-rows");
  var count = document.getElementById("record-count");
  if (!button || !rows) return;
  var source = null;
  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }
  function pre(text) {
    var td = document.createElement("td"), p = document.createElement("pre");
    p.textContent = text;
    td.appendChild(p);
    return td;
  }
  button.addEventListener("click", function () {
    if (source) {
      source.close();
      source = null;
      button.textContent = "Live tail";
      return;
    }
    source = new EventSource(button.dataset.src);
    button.textContent = "Stop tail";
    source.onmessage = function (event) {
      var r = JSON.parse(event.data);
      var tr = document.createElement("tr");
      tr.className = "record tailed";
      tr.dataset.offset = r.offset;
      tr.dataset.partition = r.partition;
      tr.appendChild(cell(r.partition, "num"));
      tr.appendChild(cell(r.offset, "num"));
      tr.appendChild(cell(new Date(r.timestamp).toISOString()));
      tr.appendChild(pre(r.key));
      var value = pre(r.value);
      value.firstChild.className = "value";
      tr.appendChild(value);
      tr.appendChild(cell(r.headers.map(function (h) { return h[0] + "=" + h[1]; }).join(", ")));
      rows.insertBefore(tr, rows.firstChild);
      count.textContent = String(rows.children.length);
    };
  });
})();
