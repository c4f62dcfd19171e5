// Prepares the ipywidgets embedder (embed-amd.js, the script after this one) for this book.
// _config.yml loads it, after require.js, on the pages that have widgets (nb_ipywidgets_js).

// The embedder's modules look for their icon fonts in the folder of the URL that requirejs
// gives their module names, by default the page's own folder. The fonts lie in _static/,
// beside this file: map the names there.
const staticFolder = new URL(".", document.currentScript.src).href.replace(/\/$/, "");
requirejs.config({
  paths: {"@jupyter-widgets": staticFolder, "@jupyter-widgets/html-manager/dist": staticFolder},
});

// ipywidgets typesets a widget's label with MathJax 2's API,
// MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads MathJax 3, so this maps
// that call to MathJax 3's. MathJax is a deferred script, so it exists by DOMContentLoaded,
// and the widgets render later, on load.
window.addEventListener("DOMContentLoaded", () => {
  if (window.MathJax) {
    MathJax.Hub = {
      Queue: ([, , element]) => MathJax.startup.promise.then(() => MathJax.typesetPromise([element])),
    };
  }
});
