from django import forms

from contact.models import ContactMessage

MIN_MESSAGE_CHARS = 20
MAX_MESSAGE_CHARS = 5000


class ContactForm(forms.ModelForm):
    message = forms.CharField(
        min_length=MIN_MESSAGE_CHARS,
        max_length=MAX_MESSAGE_CHARS,
        widget=forms.Textarea(attrs={"rows": 7}),
        help_text=f"At least {MIN_MESSAGE_CHARS} characters.",
    )

    class Meta:
        model = ContactMessage
        fields = ["name", "email", "message"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "name"}),
            "email": forms.EmailInput(attrs={"autocomplete": "email"}),
        }
