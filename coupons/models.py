# Coupons, customers and their event history arrive with the lifecycle (issue 3).
