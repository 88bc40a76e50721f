"""AWS CloudWatch: metrics in embedded metric format plus a log group of events, read back by
GetMetricData and Logs Insights."""
