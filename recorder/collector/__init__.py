"""recorder.collector"""
