"""Speed: the suite (eager vs every backend x recipe), Arm's recipe built Arm's way, bare runtime calls, the roofline."""
