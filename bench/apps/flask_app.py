"""A small Flask application, what a real one does per request at the least:
route a path with a parameter, build a JSON answer."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get('/users/<int:user_id>')
def user(user_id):
    return jsonify(id=user_id, name=f'user {user_id}', active=True)
