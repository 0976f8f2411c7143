// A form with data-confirm="Question?" asks before it is sent (Cancel a job...).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
