"""recorder.simulator"""
