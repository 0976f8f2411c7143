# CSV import jobs arrive with the imports capability (issue 5).
