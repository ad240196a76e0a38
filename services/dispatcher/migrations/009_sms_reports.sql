-- An SMS reply names no message when the gateway gives no reference: it answers the latest SMS
-- handed over to its number (services/dispatcher/webhooks/gateway.py).
CREATE INDEX deliveries_sms_handed_over ON dispatcher.deliveries (address, finished_at DESC)
    WHERE channel = 'sms' AND state = 'delivered';
-- Twilio's status callbacks name their message by its sid, the delivery's provider message.
CREATE INDEX deliveries_sms_provider_message ON dispatcher.deliveries (provider_message)
    WHERE channel = 'sms';
