"""Draw and classify: turning a drawing or a photo into the 28×28 image a network sees, and the learner's own digits.

`preprocess` owns the MNIST-style preparation and the safe reading of uploaded images;
`digits` owns the personal "my digits" set; `classify` owns one prediction. Nothing here
knows of Streamlit or of the job service.
"""
