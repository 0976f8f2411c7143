// Claims and redemptions per day, drawn with the vendored Chart.js.
(function () {
  const data = JSON.parse(document.getElementById("activity-data").textContent);
  new Chart(document.getElementById("activity-chart"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "Claims", data: data.claims, backgroundColor: "#0d6efd" },
        { label: "Redemptions", data: data.redemptions, backgroundColor: "#198754" },
      ],
    },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, animation: false },
  });
})();
