// A progress bar carries its width in data-percent, as the Content-Security-Policy allows
// no style attribute: set it when the page loads and whenever htmx swaps content in.
htmx.onLoad((root) => {
  const bars = root.matches && root.matches("[data-percent]") ? [root] : [];
  bars.concat(Array.from(root.querySelectorAll("[data-percent]"))).forEach((bar) => {
    bar.style.width = `${Math.max(0, Math.min(100, Number(bar.dataset.percent) || 0))}%`;
  });
});
