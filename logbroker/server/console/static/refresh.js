// Reload the page every data-refresh seconds (the broker page's auto-refresh).
(function () {
  var el = document.querySelector("[data-refresh]");
  var seconds = el ? parseInt(el.getAttribute("data-refresh"), 10) : 0;
  if (seconds > 0) { setTimeout(function () { location.reload(); }, seconds * 1000); }
})();
