"""recorder.poller"""
